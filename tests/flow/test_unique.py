"""Unique jobs against real Postgres: the database (a partial unique index and ON CONFLICT)
decides, so concurrent duplicates insert one row and every caller gets that job back."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from engine import JobSpec
from engine.core.acks import Ack
from engine.db.store import JobStore
from tests.flow.conftest import flow_registry
from tests.support.scripted import Recorder

UNIQUE_URL = {"keys": ["url"]}


async def key_rows(pg_url: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetch(f'SELECT id, state, args FROM "{schema}".jobs ORDER BY id')
    finally:
        await conn.close()


async def test_hundred_concurrent_identical_enqueues_insert_one_row(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(flow_registry(recorder), pool_size=50)
    start = asyncio.Event()

    async def enqueue(n: int) -> Any:
        await start.wait()
        return await engine.enqueue("scripted", {"url": "https://example.test/a", "n": n}, unique=UNIQUE_URL)

    tasks = [asyncio.create_task(enqueue(n)) for n in range(100)]
    await asyncio.sleep(0)
    start.set()
    jobs = await asyncio.gather(*tasks)  # no caller gets an exception
    rows = await key_rows(pg_url, schema)
    assert len(rows) == 1
    assert {job.id for job in jobs} == {rows[0]["id"]}
    assert {job.state for job in jobs} == {"available"}


async def test_duplicates_in_one_batch_and_callers_own_transactions(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(flow_registry(recorder))
    batch = await engine.enqueue_many([JobSpec(kind="scripted", args={"url": "u", "n": n}, unique=UNIQUE_URL)
                                       for n in range(5)])
    assert len({job.id for job in batch}) == 1
    connections = [await asyncpg.connect(pg_url) for _ in range(20)]
    try:
        async def in_transaction(conn: asyncpg.Connection) -> Any:
            async with conn.transaction():
                return await engine.enqueue("scripted", {"url": "u"}, unique=UNIQUE_URL, conn=conn)

        jobs = await asyncio.gather(*(in_transaction(conn) for conn in connections))
    finally:
        for conn in connections:
            await conn.close()
    assert {job.id for job in jobs} == {batch[0].id}
    assert len(await key_rows(pg_url, schema)) == 1


async def test_explicit_key_states_and_period(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(flow_registry(recorder))
    first = await engine.enqueue("scripted", {"a": 1}, unique={"key": "report-2024-01"})
    same = await engine.enqueue("scripted", {"a": 2}, unique={"key": "report-2024-01"})
    assert same.id == first.id and same.args == {"a": 1}
    await engine.cancel(first.id)  # left the (default) unique states: the key is free again
    second = await engine.enqueue("scripted", {"a": 3}, unique={"key": "report-2024-01"})
    assert second.id != first.id

    hourly = {"keys": ["url"], "period": 3600, "states": ["available", "completed", "cancelled"]}
    once = await engine.enqueue("scripted", {"url": "v"}, unique=hourly)
    await engine.cancel(once.id)  # still held: "cancelled" is one of its states
    assert (await engine.enqueue("scripted", {"url": "v"}, unique=hourly)).id == once.id
    assert len(await key_rows(pg_url, schema)) == 3


async def test_holder_leaving_its_unique_states_under_a_duplicate_insert(
        start_engine, recorder, pg_url, schema) -> None:
    """The race: the insert skipped (the key was held), then the holder completes before
    the insert reads it back. The caller must get the job that holds the key now."""
    engine = await start_engine(flow_registry(recorder))
    queue: JobStore = engine.store
    holder = await engine.enqueue("scripted", {"url": "w"}, unique=UNIQUE_URL)
    (claimed,) = await queue.fetch("default", 1, "test-node")

    async def complete_holder_first() -> None:
        if claimed.state == "executing":
            claimed.state = "completed"
            await queue.finish([Ack(job_id=claimed.id, attempt=claimed.attempt, attempted_at=claimed.attempted_at,
                                    state="completed", result="done")])

    queue.hooks.before_unique_lookup = complete_holder_first
    job = await engine.enqueue("scripted", {"url": "w"}, unique=UNIQUE_URL)
    assert job.id != holder.id and job.state == "available"
    assert [(r["id"], r["state"]) for r in await key_rows(pg_url, schema)] == [
        (holder.id, "completed"), (job.id, "available")]


async def test_holder_deleted_under_a_duplicate_insert(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(flow_registry(recorder))
    holder = await engine.enqueue("scripted", {"url": "x"}, unique=UNIQUE_URL)
    deleted: list[bool] = []

    async def delete_holder_first() -> None:
        if not deleted:
            deleted.append(await engine.delete(holder.id))

    engine.store.hooks.before_unique_lookup = delete_holder_first
    job = await engine.enqueue("scripted", {"url": "x"}, unique=UNIQUE_URL)
    assert deleted == [True] and job.id != holder.id
    assert [r["id"] for r in await key_rows(pg_url, schema)] == [job.id]


async def test_concurrent_duplicates_while_the_holder_completes(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), pool_size=40)
    queue: JobStore = engine.store
    for round_ in range(5):
        args, name = {"url": "race"}, f"race-{round_}"  # a queue per round: the key includes it
        holder = await engine.enqueue("scripted", args, unique=UNIQUE_URL, queue=name)
        (claimed,) = await queue.fetch(name, 1, "test-node")
        ack = Ack(job_id=claimed.id, attempt=claimed.attempt, attempted_at=claimed.attempted_at, state="completed")

        async def enqueue(n: int, name: str = name) -> Any:
            await asyncio.sleep(0.0005 * n)
            return await engine.enqueue("scripted", {"url": "race"}, unique=UNIQUE_URL, queue=name)

        async def complete(ack: Ack = ack) -> None:
            await asyncio.sleep(0.01)
            await queue.finish([ack])

        *jobs, _ = await asyncio.gather(*(enqueue(n) for n in range(60)), complete())
        rows = [(job.id, job.state) for job in await engine.list_jobs(queue=name)][::-1]
        assert len(rows) <= 2 and rows[0] == (holder.id, "completed")
        assert {job.id for job in jobs} <= {job_id for job_id, _ in rows}
        assert [state for _, state in rows[1:]] in ([], ["available"])
