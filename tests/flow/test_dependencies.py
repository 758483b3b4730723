"""Job dependencies (dependsOn) against real Postgres: a diamond runs in order, a failed
dependency cancels its dependents (transitively), and no release is lost to races."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine import EnqueueError, JobSpec
from engine.insert.dependencies import FAR_FUTURE
from engine.maintenance import sweeper as sweeper_module
from engine.testing import wait_for_job
from tests.flow.conftest import flow_registry
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 10}}


@pytest.fixture(autouse=True)
def no_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here must pass on the acks alone: the backstop sweeper never runs."""
    monkeypatch.setattr(sweeper_module, "SWEEP_INTERVAL", 3600.0)


async def test_diamond_runs_in_dependency_order(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    a = await engine.enqueue("scripted", {"sleep": 0.2, "result": "a"})
    b, c = await engine.enqueue_many([
        JobSpec(kind="scripted", args={"sleep": 0.1, "result": "b"}, depends_on=(a.id,)),
        JobSpec(kind="scripted", args={"sleep": 0.3, "result": "c"}, depends_on=(a.id,)),
    ])
    d = await engine.enqueue_document({"jobType": "scripted", "data": {"result": "d"}, "dependsOn": [b.id, c.id]})
    assert (b.state, c.state, d.state) == ("scheduled", "scheduled", "scheduled")
    assert d.scheduled_at == FAR_FUTURE

    done = {job.id: await wait_for_job(engine, job.id, timeout=10) for job in (a, b, c, d)}
    assert {job.state for job in done.values()} == {"completed"}
    # Each job started only after every job it depends on had completed.
    assert done[b.id].attempted_at >= done[a.id].completed_at
    assert done[c.id].attempted_at >= done[a.id].completed_at
    assert done[d.id].attempted_at >= max(done[b.id].completed_at, done[c.id].completed_at)
    assert recorder.started[0] == a.id and recorder.started[-1] == d.id
    assert set(recorder.started[1:3]) == {b.id, c.id}
    # B and C ran side by side (both released by A's ack), D waited for the slower C.
    assert done[c.id].attempted_at < done[b.id].completed_at
    assert done[d.id].meta["depends_on"] == sorted([b.id, c.id])


async def test_failed_dependency_cancels_dependents_transitively(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    a = await engine.enqueue("scripted", {"sleep": 0.1, "action": "permanent"})
    b = await engine.enqueue("scripted", {}, depends_on=[a.id])
    other = await engine.enqueue("scripted", {"result": "other"})
    c = await engine.enqueue("scripted", {}, depends_on=[b.id, other.id])

    assert (await wait_for_job(engine, a.id)).state == "discarded"
    cancelled_b = await wait_for_job(engine, b.id)
    cancelled_c = await wait_for_job(engine, c.id)
    assert cancelled_b.state == cancelled_c.state == "cancelled"
    assert cancelled_b.errors[-1]["error"] == f"dependency {a.id} was discarded"
    assert cancelled_c.errors[-1]["error"] == f"dependency {b.id} was cancelled"
    assert b.id not in recorder.started and c.id not in recorder.started


async def test_operator_cancel_of_a_dependency_cancels_its_dependents(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))  # insert-only: nothing runs
    a = await engine.enqueue("scripted", {})
    b = await engine.enqueue("scripted", {}, depends_on=[a.id])
    assert await engine.cancel(a.id)
    job = await engine.get(b.id)
    assert job.state == "cancelled" and job.errors[-1]["error"] == f"dependency {a.id} was cancelled"


async def test_dependencies_already_finished_at_insert_settle_at_once(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    done = await engine.enqueue("scripted", {})
    failed = await engine.enqueue("scripted", {"action": "permanent"})
    await wait_for_job(engine, done.id)
    await wait_for_job(engine, failed.id)

    runs_now = await engine.enqueue("scripted", {}, depends_on=[done.id])
    later = await engine.enqueue("scripted", {}, depends_on=[done.id], delay=30)
    never = await engine.enqueue("scripted", {}, depends_on=[done.id, failed.id])
    assert runs_now.state == "available"
    assert later.state == "scheduled" and later.scheduled_at < FAR_FUTURE  # its own delay still counts
    assert never.state == "cancelled"
    assert (await wait_for_job(engine, runs_now.id)).state == "completed"
    assert (await engine.get(never.id)).errors[-1]["error"] == f"dependency {failed.id} was discarded"


async def test_unknown_dependency_is_refused_at_enqueue(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))
    with pytest.raises(EnqueueError, match=r"dependsOn: no job with id 987654"):
        await engine.enqueue("scripted", {}, depends_on=[987654])
    with pytest.raises(EnqueueError, match="not a job id"):
        await engine.enqueue("scripted", {}, depends_on=[0])
    assert await engine.stats() == {}


async def test_dependent_inserted_in_a_rolled_back_transaction_leaves_nothing(start_engine, recorder, pg_url) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    a = await engine.enqueue("scripted", {"sleep": 0.2})
    conn = await asyncpg.connect(pg_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        ghost = await engine.enqueue("scripted", {}, depends_on=[a.id], conn=conn)
        await transaction.rollback()
    finally:
        await conn.close()
    assert (await wait_for_job(engine, a.id)).state == "completed"
    assert await engine.get(ghost.id) is None


async def test_no_release_is_lost_when_dependencies_finish_during_inserts(start_engine, recorder: Recorder) -> None:
    """Dependents are inserted while their dependencies are being claimed and acked on
    the same database: each must be released by an ack or settled at its insert."""
    engine = await start_engine(flow_registry(recorder), queues={"default": {"concurrency": 20}})
    roots = await engine.enqueue_many([JobSpec(kind="scripted", args={"sleep": 0.01 * (n % 5)})
                                       for n in range(60)])

    async def add_dependent(n: int) -> int:
        await asyncio.sleep(0.005 * n)
        deps = (roots[n].id, roots[(n * 7 + 3) % 60].id, roots[(n * 13 + 5) % 60].id)
        return (await engine.enqueue("scripted", {"n": n}, depends_on=deps)).id

    dependents = await asyncio.gather(*(add_dependent(n) for n in range(60)))

    async def all_done() -> bool:
        stats = await engine.stats()
        return stats.get("default", {}).get("completed", 0) == 120

    await wait_until(all_done, timeout=20)
    for job_id in dependents:
        job = await engine.get(job_id)
        deps = job.meta["depends_on"]
        finished = [await engine.get(dep) for dep in deps]
        assert all(job.attempted_at >= dep.completed_at for dep in finished)


async def test_sweeper_settles_dependents_of_jobs_finished_outside_an_ack(
        start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(flow_registry(recorder))  # insert-only
    a = await engine.enqueue("scripted", {})
    b = await engine.enqueue("scripted", {}, depends_on=[a.id])
    gone = await engine.enqueue("scripted", {})
    c = await engine.enqueue("scripted", {}, depends_on=[gone.id])
    conn = await asyncpg.connect(pg_url)
    try:  # finished behind the engine's back: plain SQL, as a bulk action or the rescue would
        await conn.execute(f'UPDATE "{schema}".jobs SET state = \'completed\' WHERE id = $1', a.id)
        await conn.execute(f'DELETE FROM "{schema}".jobs WHERE id = $1', gone.id)
    finally:
        await conn.close()
    assert (await engine.get(b.id)).state == "scheduled"
    swept = await sweeper_module.DependencySweeper(engine.store).sweep()
    assert swept == 2
    assert (await engine.get(b.id)).state == "available"
    cancelled = await engine.get(c.id)
    assert cancelled.state == "cancelled" and cancelled.errors[-1]["error"] == f"dependency {gone.id} was deleted"
