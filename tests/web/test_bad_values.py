"""Bad values are a 400 naming the problem, never a 503 or a 500 (issue 19): each input
goes to the real API and the engine keeps running."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard

HUGE_ID = "9" * 19  # 19 digits: past bigint's 9223372036854775807

# (name, body bytes, content type, words the error must contain); a field the document
# validator names is a 422 "Invalid job document" (the documented status), any other bad value a 400
DOCUMENT_FIELDS = {"date past year 9999", "delay past the calendar", "tiny unique period", "huge unique period",
                   "NUL in queue", "NUL in kind", "huge priority", "huge attempts"}
BODIES: list[tuple[str, bytes, str, tuple[str, ...]]] = [
    ("deep JSON", b'{"jobType": "scripted", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "application/json", ("nested",)),
    ("deep JSON Postgres refuses", json.dumps({"jobType": "scripted", "delay": 3_600_000,
                                              "data": {"d": json.loads("[" * 900 + "]" * 900)}}).encode(),
     "application/json", ("nested",)),
    ("invalid UTF-8", b'{"jobType": "scripted", "data": {"to": "\xff\xfe"}}', "application/json", ("UTF-8",)),
    ("unknown charset", b'{"jobType": "scripted"}', "application/json; charset=no-such-charset",
     ("charset", "no-such-charset")),
    ("date past year 9999", b'{"jobType": "scripted", "scheduledAt": "9999-12-31T23:59:59-12:00"}',
     "application/json", ("scheduledAt",)),
    ("delay past the calendar", b'{"jobType": "scripted", "delay": 1e300}', "application/json", ("delay",)),
    ("tiny unique period", b'{"jobType": "scripted", "unique": {"period": 1e-300}}', "application/json",
     ("period",)),
    ("huge unique period", b'{"jobType": "scripted", "unique": {"period": 1e300}}', "application/json",
     ("period",)),
    ("NUL in queue", b'{"jobType": "scripted", "queue": "mail\\u0000x"}', "application/json", ("NUL", "queue")),
    ("NUL in kind", b'{"jobType": "scr\\u0000ipted"}', "application/json", ("NUL",)),
    ("huge priority", b'{"jobType": "scripted", "priority": 99999999999}', "application/json", ("priority",)),
    ("huge attempts", b'{"jobType": "scripted", "attempts": 99999999999}', "application/json", ("attempts",)),
]


async def _alive(dashboard: Dashboard) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"})

    async def done() -> bool:
        found = await dashboard.engine.get(job.id)
        return found is not None and found.state == "completed"

    await wait_until(done)
    assert dashboard.engine.health()["healthy"]


@pytest.mark.parametrize(("name", "body", "content_type", "words"), BODIES, ids=[b[0] for b in BODIES])
async def test_a_bad_enqueue_body_is_a_400_naming_the_problem(dashboard: Dashboard, http: Any, name: str,
                                                              body: bytes, content_type: str,
                                                              words: tuple[str, ...]) -> None:
    headers = {**dashboard.auth, "Content-Type": content_type}
    async with http.post(dashboard.url + "/api/jobs", data=body, headers=headers) as response:
        text = await response.text()
        expected = 422 if name in DOCUMENT_FIELDS else 400
        assert response.status == expected, f"{name}: {response.status} {text[:300]}"
        message = (await response.json())["error"]
    assert "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), f"{name}: {message!r} does not name {word!r}"
    await _alive(dashboard)


@pytest.mark.parametrize(("path", "status", "words"), [
    (f"/api/jobs/{HUGE_ID}", 400, "job id"), (f"/api/jobs/{HUGE_ID}/retry", 400, "job id"),
    ("/api/jobs/" + "1" * 40, 400, "job id"), (f"/jobs/{HUGE_ID}", 404, "no job")])
async def test_an_oversized_job_id_is_refused(dashboard: Dashboard, http: Any, path: str, status: int,
                                             words: str) -> None:
    method = http.post if path.endswith("/retry") else http.get
    async with method(dashboard.url + path, headers={**dashboard.auth, "Accept": "application/json"}) as response:
        assert response.status == status, f"{path}: {response.status} {(await response.text())[:300]}"
        assert words in await response.text()
    await _alive(dashboard)


@pytest.mark.parametrize("ids", [[int(HUGE_ID)], [2**70], [1, 2**63]])
async def test_bulk_with_an_oversized_id_is_a_400(dashboard: Dashboard, http: Any, ids: list[int]) -> None:
    async with http.post(dashboard.url + "/api/jobs/bulk", json={"action": "retry", "ids": ids},
                         headers=dashboard.auth) as response:
        assert response.status == 400, f"{ids}: {response.status} {(await response.text())[:300]}"
        assert "ids" in (await response.json())["error"]
    await _alive(dashboard)


@pytest.mark.parametrize("body", [b'{"action": "retry", "filter": {"queue": "ma\\u0000il"}}',
                                  b'{"action": "retry", "ids": [1], "x": "\xff"}',
                                  b'{"action": "retry", "filter": {"before": "99999999999999999999"}}',
                                  b'{"action": "retry", "filter": {"kind": "scr\\u0000ipted"}}'])
async def test_bulk_with_a_bad_value_is_a_400(dashboard: Dashboard, http: Any, body: bytes) -> None:
    headers = {**dashboard.auth, "Content-Type": "application/json"}
    async with http.post(dashboard.url + "/api/jobs/bulk", data=body, headers=headers) as response:
        assert response.status == 400, f"{body!r}: {response.status} {(await response.text())[:300]}"
    await _alive(dashboard)


@pytest.mark.parametrize("query", ["before=99999999999999999999", "after=-5", "queue=ma%00il", "kind=%00",
                                   "tag=a%00b", "q=queue:ma%00il"])
async def test_a_bad_list_filter_is_a_400(dashboard: Dashboard, http: Any, query: str) -> None:
    async with http.get(f"{dashboard.url}/api/jobs?{query}", headers=dashboard.auth) as response:
        assert response.status == 400, f"{query}: {response.status} {(await response.text())[:300]}"
    await _alive(dashboard)
