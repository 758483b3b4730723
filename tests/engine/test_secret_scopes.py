"""A secret whose scope leaves out a kind is refused when a job of that kind is enqueued."""

from __future__ import annotations

import pytest

from engine import EnqueueError

TOKEN = "tok-scoped-0123456789"


async def test_a_kind_outside_the_scope_is_refused_at_enqueue(start_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    engine = await start_engine(secrets={"API_TOKEN": {"kinds": ["http"], "hosts": ["api.example.com"]}})
    with pytest.raises(EnqueueError, match=r"secret API_TOKEN may not be used by a log job \(its kinds: http\)"):
        await engine.enqueue("log", {"message": "token {{API_TOKEN}}"})
    with pytest.raises(EnqueueError, match="onSuccess: secret API_TOKEN may not be used by a mail job"):
        await engine.enqueue_document({"jobType": "log", "data": {"message": "hi"}, "onSuccess": {
            "jobType": "mail", "data": {"to": "a@example.com", "subject": "s", "text": "{{secrets.API_TOKEN}}"}}})
    # A var of the same name is not the secret; the http kind itself is fine.
    await engine.enqueue("log", {"message": "{{API_TOKEN}}"}, vars={"API_TOKEN": "not-the-secret"})
    await engine.enqueue("http", {"url": "https://api.example.com/x", "headers": {"A": "{{API_TOKEN}}"}})
