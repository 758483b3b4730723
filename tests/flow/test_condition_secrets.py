"""Secrets in conditions are refused at enqueue, naming the secret: whether a job ran or was
cancelled (and its cancel reason) would otherwise tell the secret to anyone who can read jobs."""

from __future__ import annotations

import json

import asyncpg
import pytest

from engine import EnqueueError
from engine.testing import wait_for_job
from tests.flow.conftest import flow_registry
from tests.support.scripted import Recorder

QUEUES = {"default": {"concurrency": 2}}
TOKEN = "tok-" + "9f8e7d6c" * 7 + "abcd"


@pytest.mark.parametrize("condition", [
    '{{env}} == "prod" and {{secrets.LONG_TOKEN}} != ""',
    "{{LONG_TOKEN}} in ['a', 'b']",
    "secrets.LONG_TOKEN == 'x'",
    "{{secrets.UNSET_ONE}} == 'x'",  # declared, not set: still a secret
])
async def test_a_condition_reading_a_secret_is_refused_at_enqueue(
        start_engine, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, condition: str) -> None:
    monkeypatch.setenv("LONG_TOKEN", TOKEN)
    engine = await start_engine(flow_registry(recorder), queues=QUEUES, secrets=["LONG_TOKEN", "UNSET_ONE"])
    with pytest.raises(EnqueueError, match=r"condition: uses secret (LONG_TOKEN|UNSET_ONE)"):
        await engine.enqueue_document({"jobType": "maintenance-task", "condition": condition,
                                       "vars": {"env": "prod"}})
    with pytest.raises(EnqueueError, match="onSuccess: condition: uses secret"):
        await engine.enqueue_document({"jobType": "maintenance-task", "vars": {"env": "prod"},
                                       "onSuccess": {"jobType": "maintenance-task", "condition": condition}})


async def test_a_condition_without_secrets_still_runs(
        start_engine, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONG_TOKEN", TOKEN)
    engine = await start_engine(flow_registry(recorder), queues=QUEUES, secrets=["LONG_TOKEN"])
    job = await engine.enqueue_document({"jobType": "maintenance-task", "condition": "{{env}} == 'prod'",
                                         "vars": {"env": "dev"}})
    done = await wait_for_job(engine, job.id)
    assert done.state == "cancelled"
    assert done.errors[-1]["error"] == "condition not met: {{env}} == 'prod' (env=\"dev\")"


async def test_a_secret_condition_written_around_the_api_is_discarded_at_run(
        start_engine, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, pg_url: str, schema: str) -> None:
    monkeypatch.setenv("LONG_TOKEN", TOKEN)
    engine = await start_engine(flow_registry(recorder), secrets=["LONG_TOKEN"])
    job = await engine.enqueue_document({"jobType": "maintenance-task", "condition": "{{env}} == 'x'",
                                         "vars": {"env": "x"}})
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'UPDATE "{schema}".jobs SET meta = jsonb_set(meta, \'{{condition}}\', $2::jsonb) '
                           "WHERE id = $1", job.id, json.dumps("{{LONG_TOKEN}} == 'guess'"))
    finally:
        await conn.close()
    worker = await start_engine(flow_registry(recorder), queues=QUEUES, secrets=["LONG_TOKEN"])
    done = await wait_for_job(worker, job.id)
    assert done.state == "discarded"
    assert "condition uses secret LONG_TOKEN" in done.errors[-1]["error"]
    assert recorder.started == []
