"""The node supervisor and its producers stay alive: a handler's stray CancelledError,
SystemExit or KeyboardInterrupt is a failed attempt; a job this process still runs is
never claimed again beside itself; a task that ends early is logged, counted, reported
unhealthy and restarted."""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import aiohttp
import anyio
import asyncpg
import pytest
import structlog

from engine.core.job import Job
from engine.core.registry import Registry
from engine.testing import wait_for_job
from engine.web import serve
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

TOKEN = "t" * 32


def _stray_registry() -> Registry:
    registry = Registry()

    @registry.handler("stray", max_attempts=2)
    async def stray(job: Job) -> Any:
        match job.args["raise"]:
            case "cancelled":  # the classic: cancel a helper task, then await it
                helper = asyncio.create_task(asyncio.sleep(10))
                helper.cancel()
                await helper
            case "exit":
                sys.exit(3)
            case "interrupt":
                raise KeyboardInterrupt
        return {"ok": True}

    return registry


@pytest.mark.parametrize("stray", ["cancelled", "exit", "interrupt"])
async def test_a_handlers_stray_base_exception_is_a_failed_attempt_and_the_queue_runs_on(start_engine,
                                                                                       stray: str) -> None:
    engine = await start_engine(_stray_registry(), queues={"default": {"concurrency": 2}})
    bad = await engine.enqueue("stray", {"raise": stray})
    failed = await wait_until(lambda: _state(engine, bad.id, "retryable"), timeout=10)
    assert failed.attempt == 1
    assert "raised by the handler (the job was not cancelled)" in failed.errors[-1]["error"]
    good = await engine.enqueue("stray", {"raise": "nothing"})
    assert (await wait_for_job(engine, good.id)).state == "completed"
    assert engine.healthy and engine.health()["task_restarts"] == {}


async def _state(engine: Any, job_id: int, state: str) -> Any:
    job = await engine.get(job_id)
    return job if job.state == state else None


@pytest.mark.parametrize("queue", [{"concurrency": 3}, {"concurrency": 3, "global_limit": 10}],
                         ids=["plain claim", "limited claim"])
async def test_a_job_rescued_while_it_still_runs_here_is_not_claimed_again_beside_it(
        start_engine, recorder: Recorder, pg_url: str, schema: str, queue: dict[str, Any]) -> None:
    gate = anyio.Event()
    registry = scripted_registry(recorder)

    @registry.handler("held")
    async def held(job: Job) -> Any:
        recorder.start(job)
        try:
            await gate.wait()
        finally:
            recorder.stop(job)
        return {"attempt": job.attempt}

    engine = await start_engine(registry, queues={"default": queue})
    job = await engine.enqueue("held", {}, priority=10)
    await wait_until(lambda: recorder.runs[job.id] == 1)
    # What another node's rescue does while this one is frozen or cut off: the job is
    # available again, and this process still runs its first attempt.
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'UPDATE "{schema}".jobs SET state = \'available\' WHERE id = $1', job.id)
    finally:
        await conn.close()
    # A later, lower-priority job completing proves claims ran after the rescue: each one
    # would have taken the rescued job first.
    later = await engine.enqueue("scripted", {}, priority=0)
    assert (await wait_for_job(engine, later.id, timeout=10)).state == "completed"
    assert recorder.runs[job.id] == 1 and recorder.peak == 2
    gate.set()  # the first attempt ends (its ack is stale); only now may the job run again
    done = await wait_for_job(engine, job.id, timeout=10)
    assert done.state == "completed" and done.result == {"attempt": 2}
    assert recorder.runs[job.id] == 2 and engine.healthy


async def test_a_producer_that_ends_early_is_logged_counted_unhealthy_and_restarted(
        start_engine, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                dashboard={"token": TOKEN})
    producer = engine.producers["default"]
    real_claim = producer._claim
    ends = 0

    async def claim_that_ends_the_producer(free: int) -> list[Job]:
        nonlocal ends
        if ends < 3:  # a bug: a stray CancelledError (not the engine's) ends the producer's loop
            ends += 1
            raise asyncio.CancelledError
        return await real_claim(free)

    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(producer, "_claim", claim_that_ends_the_producer)
        producer.notify()
        await wait_until(lambda: engine.health()["task_restarts"].get("producer default") == 3, timeout=10)
        health = engine.health()
        assert not health["healthy"] and health["tasks_down"] == ["producer default"]
        job = await engine.enqueue("scripted", {})
        assert (await wait_for_job(engine, job.id, timeout=20)).state == "completed"
    await wait_until(lambda: engine.healthy, timeout=5)
    ended = [entry for entry in logs if entry["event"] == "engine task ended unexpectedly; restarting it"]
    assert len(ended) == 3 and ended[0]["task"] == "producer default"
    assert isinstance(ended[0]["exc_info"], asyncio.CancelledError)
    # Counted per task in /metrics, every supervised task from 0, so rate() and alerts work.
    async with serve(engine, bind="127.0.0.1:0") as server, aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        text = await response.text()
    assert re.search(r"^# TYPE jobengine_task_restarts(_total)? counter$", text, re.MULTILINE)
    restarts = dict(re.findall(r'^jobengine_task_restarts_total\{task="([^"]+)"\} (\S+)$', text, re.MULTILINE))
    assert restarts["producer default"] == "3.0"
    assert restarts["acker"] == restarts["lifeline"] == "0.0"


async def test_a_producer_that_ends_early_returns_the_jobs_it_was_running(
        start_engine, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    producer = engine.producers["default"]
    job = await engine.enqueue("scripted", {"sleep": 30})
    await wait_until(lambda: recorder.runs[job.id] == 1)
    real_wait = producer._wait
    ended = False

    async def wait_that_ends_the_producer() -> None:
        nonlocal ended
        if not ended:
            ended = True
            raise RuntimeError("a bug in the producer loop")
        await real_wait()

    monkeypatch.setattr(producer, "_wait", wait_that_ends_the_producer)
    producer.notify()
    # The attempt was cancelled with its producer and handed back at once, not left executing
    # under this node's name for the lost-claim rescue; the restarted producer runs it again.
    await wait_until(lambda: recorder.runs[job.id] == 2, timeout=10)
    assert job.id in recorder.cancelled
    assert (await engine.get(job.id)).attempt == 1
    assert engine.health()["task_restarts"] == {"producer default": 1}
