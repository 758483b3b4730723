"""The Engine facade against real Postgres: enqueue, transactions, insert-only, operator actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import asyncpg
import pytest

from engine import Engine, EnqueueError, JobSpec
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}}


async def test_enqueued_job_runs_and_stores_its_result(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"result": {"answer": 42}}, tags=["t1"])
    assert job.state == "available" and job.tags == ["t1"]
    done = await wait_for_job(engine, job.id)
    assert done.state == "completed"
    assert done.result == {"answer": 42}
    assert done.attempt == 1 and done.completed_at is not None


async def test_enqueue_many_inserts_a_batch_in_order(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    jobs = await engine.enqueue_many([JobSpec(kind="scripted", args={"n": n}) for n in range(500)])
    assert [job.args["n"] for job in jobs] == list(range(500))
    assert await engine.stats() == {"default": {"available": 500}}


async def test_job_inserted_in_rolled_back_transaction_never_exists(start_engine, recorder, pg_url) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    conn = await asyncpg.connect(pg_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        ghost = await engine.enqueue("scripted", {"n": "ghost"}, conn=conn)
        await transaction.rollback()
        async with conn.transaction():
            kept = await engine.enqueue("scripted", {"n": "kept"}, conn=conn)
    finally:
        await conn.close()
    await wait_for_job(engine, kept.id)
    assert await engine.get(ghost.id) is None
    assert ghost.id not in recorder.started
    assert recorder.started == [kept.id]


async def test_insert_only_engine_never_runs_jobs(start_engine, recorder: Recorder) -> None:
    client = await start_engine(scripted_registry(recorder))  # no [queues]: insert-only
    assert not client.processing
    job = await client.enqueue("scripted", {})
    worker = await start_engine(scripted_registry(recorder), queues=QUEUES)
    assert (await wait_for_job(worker, job.id)).state == "completed"
    assert recorder.runs[job.id] == 1


async def test_delayed_job_waits_then_runs_on_time(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, poll_interval=5)
    job = await engine.enqueue("scripted", {}, delay=0.6)
    assert job.state == "scheduled"
    done = await wait_for_job(engine, job.id, timeout=5)
    late = (done.attempted_at - done.scheduled_at).total_seconds()
    assert done.state == "completed"
    assert 0 <= late < 0.5, f"started {late:.3f}s after it was due"


async def test_scheduled_at_in_the_future_keeps_job_scheduled(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {}, scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    assert job.state == "scheduled"
    assert (await engine.get(job.id)).state == "scheduled"


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("no-such-kind", {}, "no handler registered for kind 'no-such-kind'"),
        ("scripted", {"text": "a\x00b"}, "NUL byte"),
        ("scripted", {"when": datetime.now(UTC)}, "args is not JSON"),
        ("scripted", {"x": float("nan")}, "args is not JSON"),
        ("log", {"level": "info", "mesage": "typo"}, "invalid args for 'log'"),
    ],
)
async def test_bad_input_is_refused_at_enqueue_and_nothing_is_inserted(
    start_engine, recorder: Recorder, kind: str, args: dict, message: str
) -> None:
    engine = await start_engine(scripted_registry(recorder))
    with pytest.raises(EnqueueError, match=message):
        await engine.enqueue(kind, args)
    assert await engine.stats() == {}


async def test_a_bad_job_in_a_batch_inserts_none(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    specs = [JobSpec(kind="scripted", args={}), JobSpec(kind="scripted", args={"bad": "\x00"})]
    with pytest.raises(EnqueueError, match=r"job #1 \(scripted\)"):
        await engine.enqueue_many(specs)
    assert await engine.stats() == {}


async def test_bad_options_name_the_option(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    with pytest.raises(EnqueueError, match="max_attempts must be >= 1"):
        await engine.enqueue("scripted", {}, max_attempts=0)
    with pytest.raises(EnqueueError, match="delay must be a finite number"):
        await engine.enqueue("scripted", {}, delay=-1)


async def test_cancel_retry_and_delete(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    job = await engine.enqueue("scripted", {})
    assert await engine.cancel(job.id)
    assert (await engine.get(job.id)).state == "cancelled"
    assert not await engine.cancel(job.id), "a finished job cannot be cancelled again"
    assert await engine.retry(job.id)
    assert (await engine.get(job.id)).state == "available"
    assert await engine.delete(job.id)
    assert await engine.get(job.id) is None


async def test_cancelling_an_executing_job_stops_its_handler(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"sleep": 30})
    await wait_until(lambda: job.id in recorder.started)
    assert await engine.cancel(job.id)
    await wait_until(lambda: job.id in recorder.cancelled, timeout=5)
    await engine.acker.wait_idle()
    assert (await engine.get(job.id)).state == "cancelled"


async def test_two_engines_migrating_together_both_start(make_config, recorder: Recorder) -> None:
    engines = [Engine(config=make_config(), registry=scripted_registry(recorder)) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for engine in engines:
            group.start_soon(engine.start)
    try:
        job = await engines[0].enqueue("scripted", {})
        assert (await engines[2].get(job.id)).id == job.id
    finally:
        for engine in engines:
            await engine.stop()
