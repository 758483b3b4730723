"""The deliberate fast paths come in pairs that must leave identical rows: the plain and the
keyed insert statement, the lean completion and the general state-setting ack
(docs/architecture.md, "Fast paths")."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from engine.core.acks import Ack
from engine.core.job import JOB_OPTIONS
from engine.db.rows import InsertRow
from engine.db.store import JobStore
from engine.engine import Engine

COMPARED = ("queue", "kind", "args", "meta", "state", "priority", "max_attempts", "timeout", "tags",
            "attempt", "result", "errors", "completed_at IS NOT NULL AS completed")


@pytest_asyncio.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[JobStore]:
    job_store = JobStore(pg_url, schema=schema)
    await job_store.open()
    await job_store.migrate()
    yield job_store
    await job_store.close()


async def _rows(store: JobStore, ids: list[int]) -> list[dict[str, Any]]:
    async with store.pool.acquire() as conn:
        records = await conn.fetch(
            f'SELECT {", ".join(COMPARED)} FROM "{store.schema}".jobs WHERE id = ANY($1) ORDER BY id', ids)
    return [dict(r) for r in records]


def _row(**changes: Any) -> InsertRow:
    fields: dict[str, Any] = {"queue": "default", "kind": "k", "args": {"to": "a@b.c"}, "priority": 3,
                              "max_attempts": 4, "timeout": 2.5, "meta": {"vars": {"x": 1}}, "tags": ["t"]}
    return InsertRow(**(fields | changes))


async def test_the_plain_and_the_keyed_insert_write_the_same_row(store: JobStore) -> None:
    (plain,) = await store.insert([_row()])  # no unique key: JOB_INSERT_MANY_PLAIN
    (keyed,) = await store.insert([_row(unique_key="k-1", unique_states=["available"])])  # JOB_INSERT_MANY
    first, second = await _rows(store, [plain.id, keyed.id])
    assert first == second


async def test_the_lean_completion_and_the_general_ack_write_the_same_row(store: JobStore) -> None:
    await store.insert([_row(), _row()])
    lean_job, general_job = await store.fetch("default", 2, "node-1")
    lean = Ack.completed(lean_job, {"sent": True})
    assert lean.plain_completion
    assert await store.finish([lean]) == {lean_job.id}  # alone: JOB_COMPLETE_IF_EXECUTING
    general = Ack.completed(general_job, {"sent": True})
    snoozed_other = await _a_second_claimed_snooze(store)
    # Beside a snooze the batch takes JOB_SET_STATE_IF_EXECUTING for both acks.
    assert await store.finish([general, snoozed_other]) == {general_job.id, snoozed_other.job_id}
    first, second = await _rows(store, [lean_job.id, general_job.id])
    assert first == second


async def _a_second_claimed_snooze(store: JobStore) -> Ack:
    await store.insert([_row(queue="other")])
    (job,) = await store.fetch("other", 1, "node-1")
    return Ack.snoozed(job, 60.0)


async def test_an_ack_for_a_job_no_longer_executing_changes_nothing(store: JobStore) -> None:
    await store.insert([_row()])
    (job,) = await store.fetch("default", 1, "node-1")
    stale = Ack.completed(job, None)
    await store.finish([Ack.snoozed(job, 0.0)])
    assert await store.finish([stale]) == set()
    async with store.pool.acquire() as conn:
        state = await conn.fetchval(f'SELECT state FROM "{store.schema}".jobs WHERE id = $1', job.id)
    assert state in ("scheduled", "available")  # the snooze held; the late completion changed nothing


def test_engine_enqueue_takes_every_job_option_and_nothing_else() -> None:
    # Engine.enqueue builds its JobSpec from its own keywords (JobSpec.from_options): a
    # keyword that is not an option, or an option without a keyword, would be lost silently.
    keywords = set(inspect.signature(Engine.enqueue).parameters) - {"self", "kind", "args", "conn"}
    assert keywords == set(JOB_OPTIONS.by_name)


# Beyond COMPARED: when each row is due, without the clock (the delay and the fixed time).
DUE = ("CASE WHEN scheduled_at > inserted_at + interval '59 minutes' THEN 'later' ELSE 'now' END AS due",
       "CASE WHEN scheduled_at > now() + interval '1 day' THEN scheduled_at END AS fixed_time")


async def test_the_ids_insert_writes_the_rows_the_plain_insert_writes(store: JobStore) -> None:
    # JOB_INSERT_MANY_IDS sends a column shared by every row as one value: a batch where each
    # column varies somewhere, one where every column is shared, and a single row.
    varied = [_row(), _row(queue="other", priority=-2, timeout=None, tags=[], meta={}),
              _row(args={"n": 1}, delay=3600.0, max_attempts=1, tags=["a", "b"]),
              _row(args={"n": 2}, scheduled_at="2030-01-01T00:00:00+00:00", meta={"vars": {"y": "é"}})]
    for batch in (varied, [_row(args={"n": n}) for n in range(3)], [_row()]):
        jobs = await store.insert(batch)  # JOB_INSERT_MANY_PLAIN
        ids = await store.insert_ids(batch)
        assert len(ids) == len(batch) and ids == sorted(ids) and ids[0] > jobs[-1].id
        async with store.pool.acquire() as conn:
            rows = [[dict(r) for r in await conn.fetch(
                f'SELECT {", ".join(COMPARED + DUE)} FROM "{store.schema}".jobs WHERE id = ANY($1) ORDER BY id', got)]
                for got in (ids, [job.id for job in jobs])]
        assert rows[0] == rows[1]
    assert [r["due"] for r in rows[0]] == ["now"]
