"""Pruning against real Postgres: finished jobs go after their retention, in bounded batches,
on an index range scan; the engine prunes on its interval."""

from __future__ import annotations

import asyncpg

from engine.core.config import RetentionConfig
from engine.maintenance.pruner import Pruner
from tests.support.scripted import scripted_registry
from tests.support.waiting import wait_until

DAY = 86_400.0


async def set_finished(pg_url: str, schema: str, ids: list[int], state: str, days_ago: float) -> None:
    column = {"completed": "completed_at", "cancelled": "cancelled_at", "discarded": "discarded_at"}[state]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"""UPDATE "{schema}".jobs SET state = $2,
                               {column} = now() - make_interval(secs => $3) WHERE id = ANY($1)""",
                           ids, state, days_ago * DAY)
    finally:
        await conn.close()


async def test_prune_deletes_only_jobs_past_their_retention_in_bounded_batches(start_engine, recorder, pg_url,
                                                                                schema) -> None:
    client = await start_engine(scripted_registry(recorder))
    jobs = await client.enqueue_many([{"jobType": "scripted", "data": {}}] * 30)
    ids = [job.id for job in jobs]
    await set_finished(pg_url, schema, ids[0:10], "completed", days_ago=2)    # past 1 day: pruned
    await set_finished(pg_url, schema, ids[10:15], "completed", days_ago=0.5)  # kept
    await set_finished(pg_url, schema, ids[15:20], "cancelled", days_ago=2)    # pruned
    await set_finished(pg_url, schema, ids[20:25], "discarded", days_ago=2)    # kept: 30 days for failures
    # ids[25:30] stay available: never pruned, however old

    pruner = Pruner(client.store, RetentionConfig(completed=DAY, cancelled=DAY, discarded=30 * DAY, batch_size=4))
    batches: list[int] = []
    original = client.store.prune

    async def counting_prune(*args: float) -> int:
        batches.append(await original(*args))
        return batches[-1]

    client.store.prune = counting_prune  # type: ignore[method-assign]
    assert await pruner.prune_once() == 15
    assert batches == [4, 4, 4, 3]
    left = {job.id for job in await client.list_jobs(limit=100)}
    assert left == set(ids[10:15]) | set(ids[20:30])
    assert await pruner.prune_once() == 0


async def test_prune_reads_only_expired_rows_through_the_finished_index(start_engine, recorder, pg_url,
                                                                         schema) -> None:
    client = await start_engine(scripted_registry(recorder))
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"""INSERT INTO "{schema}".jobs (kind, state, completed_at)
                               SELECT 'scripted', 'completed', now() - g * interval '1 second'
                               FROM generate_series(1, 20000) AS g""")
        await conn.execute(f'ANALYZE "{schema}".jobs')
        statement = client.store.statements.JOB_PRUNE_FINISHED
        async with conn.transaction():
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + statement, DAY, DAY, 30 * DAY, 5000))
    finally:
        await conn.close()
    assert "jobs_finished_idx" in plan
    assert "Seq Scan" not in plan


async def test_engine_prunes_on_its_interval(start_engine, recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                retention={"completed": 0.2, "interval": 0.1})
    job = await engine.enqueue("scripted", {})
    await wait_until(lambda: recorder.runs[job.id] == 1)
    await wait_until(lambda: _gone(engine, job.id), timeout=5)


async def _gone(engine, job_id: int) -> bool:
    return await engine.get(job_id) is None
