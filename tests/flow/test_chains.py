"""onSuccess / onFailure chains against real Postgres: results flow down the chain, the
child records its parent, and the child is written in the very transaction that finishes
the parent (never one without the other, never twice)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from engine import EnqueueError, JobSpec
from engine.core.acks import Ack
from engine.db.store import JobStore
from engine.testing import wait_for_job
from tests.flow.conftest import flow_registry
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}}


def chain(length: int) -> dict[str, Any]:
    """``step`` n=0, then ``length`` steps each taking the previous result's n."""
    document: dict[str, Any] | None = None
    for _ in range(length):
        document = {"jobType": "step", "data": {"n": "{{result.n}}"}, **({"onSuccess": document} if document else {})}
    assert document is not None
    return {"jobType": "step", "data": {"n": 0}, "onSuccess": document}


async def children_of(engine: Any, parent_id: int) -> list[Any]:
    jobs = await engine.list_jobs(limit=500)
    return sorted((job for job in jobs if job.parent_id == parent_id), key=lambda job: job.id)


async def test_chain_passes_each_result_to_the_next(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    first = await engine.enqueue_document(chain(5))
    ids = [first.id]

    async def next_link() -> Any:
        found = await children_of(engine, ids[-1])
        return found[0] if found else None

    for _ in range(5):
        await wait_for_job(engine, ids[-1])
        child = await wait_until(next_link)
        ids.append(child.id)
    jobs = [await wait_for_job(engine, job_id) for job_id in ids]
    assert [job.state for job in jobs] == ["completed"] * 6
    assert [job.result["n"] for job in jobs] == [1, 2, 3, 4, 5, 6]
    for parent, child in itertools.pairwise(jobs):
        assert child.parent_id == parent.id
        assert child.meta["parent_result"] == parent.result
        assert child.args == {"n": "{{result.n}}"}          # stored as written ...
        assert child.result["seen"] == {"n": parent.result["n"]}  # ... resolved when it ran, keeping the type
        assert child.inserted_at >= parent.completed_at


async def test_seed_chaining_example_reaches_the_backup_result(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    parent = await engine.enqueue_document({  # the seed's example, verbatim
        "jobType": "backup-database",
        "onSuccess": {"jobType": "notify-backup-complete", "data": {"backupFile": "{{backupFile}}"}},
    })
    done = await wait_for_job(engine, parent.id)
    (child,) = await wait_until(lambda: children_of(engine, parent.id))
    child = await wait_for_job(engine, child.id)
    assert child.state == "completed"
    assert done.result["backupFile"] == "/backup/main.sql"
    assert child.result == {"told": {"backupFile": "/backup/main.sql"}}


async def test_on_failure_child_receives_the_error_and_parent_vars(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    parent = await engine.enqueue_document({
        "jobType": "scripted", "data": {"action": "permanent", "message": "disk full"}, "vars": {"host": "db-1"},
        "onSuccess": {"jobType": "scripted", "data": {"result": "never"}},
        "onFailure": {"jobType": "scripted", "data": {"result": "{{host}}: {{result.error}}"}},
    })
    assert (await wait_for_job(engine, parent.id)).state == "discarded"
    (child,) = await wait_until(lambda: children_of(engine, parent.id))
    child = await wait_for_job(engine, child.id)
    assert child.result == "db-1: PermanentError: disk full"


async def test_invalid_follow_up_is_refused_at_enqueue(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))
    with pytest.raises(EnqueueError, match=r"onSuccess:.*no-such-kind"):
        await engine.enqueue_document({"jobType": "scripted", "onSuccess": {"jobType": "no-such-kind"}})
    with pytest.raises(EnqueueError, match=r"onFailure: onSuccess.data: Input should be a valid dictionary"):
        await engine.enqueue("scripted", {}, on_failure={"jobType": "scripted",
                                                           "onSuccess": {"jobType": "step", "data": "x"}})
    assert await engine.stats() == {}


# --- the transaction boundary ---------------------------------------------------------------


async def claim_parent(engine: Any) -> tuple[JobStore, Any, Ack]:
    """A parent with onSuccess claimed by hand, and its completing ack (child row included)."""
    parent = await engine.enqueue_document({"jobType": "step", "data": {"n": 1},
                                            "onSuccess": {"jobType": "step", "data": {"n": "{{result.n}}"}}})
    queue: JobStore = engine.store
    (claimed,) = await queue.fetch("default", 1, "test-node")
    assert claimed.id == parent.id
    result = {"n": 2}
    ack = Ack(job_id=claimed.id, attempt=claimed.attempt, attempted_at=claimed.attempted_at, state="completed",
              result=result, followups=engine.executor.followups.on_completed(claimed, result))
    assert len(ack.followups) == 1
    return queue, claimed, ack


async def test_failed_child_insert_rolls_back_the_parents_completion(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))  # insert-only: acks written by hand
    queue, parent, ack = await claim_parent(engine)
    broken = replace(ack, followups=(replace(ack.followups[0], max_attempts=0),))  # violates a CHECK
    with pytest.raises(asyncpg.CheckViolationError):
        await queue.finish([broken])
    assert (await engine.get(parent.id)).state == "executing"
    assert await children_of(engine, parent.id) == []


async def test_crash_between_completion_and_child_insert_completes_nothing(start_engine, recorder, monkeypatch) -> None:
    engine = await start_engine(flow_registry(recorder))
    queue, parent, ack = await claim_parent(engine)
    original = JobStore.insert

    async def connection_lost(self: JobStore, rows: Any, *, conn: Any = None) -> Any:
        # The parent's UPDATE has run inside the ack's transaction; now the connection dies.
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(JobStore, "insert", connection_lost)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await queue.finish([ack])
    monkeypatch.setattr(JobStore, "insert", original)
    assert (await engine.get(parent.id)).state == "executing"  # rescue will retry it later
    assert await children_of(engine, parent.id) == []


async def test_an_ack_applies_once_so_the_child_is_created_once(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))
    queue, parent, ack = await claim_parent(engine)
    assert await queue.finish([ack]) == {parent.id}
    assert await queue.finish([ack]) == set()  # a duplicate delivery of the same ack
    late = replace(ack, attempted_at=datetime.now(UTC))  # an ack of some other claim
    assert await queue.finish([late]) == set()
    (child,) = await children_of(engine, parent.id)
    assert child.meta["parent_result"] == {"n": 2} and child.state == "available"
    assert (await engine.get(parent.id)).state == "completed"


async def test_chain_enqueued_with_enqueue_many_keeps_each_chain_apart(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    parents = await engine.enqueue_many([
        JobSpec(kind="step", args={"n": n * 10}, on_success={"jobType": "step", "data": {"n": "{{result.n}}"}})
        for n in range(5)])
    for parent in parents:
        await wait_for_job(engine, parent.id)
        (child,) = await wait_until(lambda parent=parent: children_of(engine, parent.id))
        assert (await wait_for_job(engine, child.id)).result["n"] == parent.args["n"] + 2
