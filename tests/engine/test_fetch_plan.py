"""The claim query stays on the small partial index jobs_fetch_idx, whatever the table holds:
a plan that scans the table or a bigger index would make every claim cost grow with the
number of finished jobs (bench/README.md, the "1M finished rows" workload)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from engine.core.job import Job
from engine.db.sql import JOB_COLUMNS
from engine.db.store import JobStore
from tests.support import plans


@pytest_asyncio.fixture
async def queue(pg_url: str, schema: str) -> AsyncIterator[JobStore]:
    job_queue = JobStore(pg_url, schema=schema)
    await job_queue.open()
    await job_queue.migrate()
    yield job_queue
    await job_queue.close()


async def _fill(conn: asyncpg.Connection, schema: str, *, available: int, finished: int) -> None:
    await conn.execute(f"""
        INSERT INTO "{schema}".jobs (queue, kind, args, state, completed_at)
        SELECT 'default', 'k', jsonb_build_object('i', i),
               CASE WHEN i <= $1::int THEN 'available' ELSE 'completed' END,
               CASE WHEN i <= $1::int THEN NULL ELSE now() END
        FROM generate_series(1, $1::int + $2::int) AS i""", available, finished)


async def _picked_scans(conn: asyncpg.Connection, queue: JobStore, mode: str = "auto") -> list[tuple[str, str | None]]:
    """How the claim query finds its rows, run as the prepared statement it is under ``mode``
    (index scans of jobs_pkey are the UPDATE reaching the picked rows). EXPLAIN ANALYZE
    really claims: tests.support.plans rolls it back."""
    plan = await plans.explain(conn, queue.statements.JOB_FETCH_AVAILABLE, "default", 32, "node-1", mode=mode,
                               analyze=True)
    return [scan for scan in plans.scans(plan) if scan[1] != "jobs_pkey"]


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_claim_reads_jobs_fetch_idx_with_many_finished_rows(queue: JobStore, schema: str,
                                                                  plan_cache_mode: str) -> None:
    # A prepared statement switches to a generic plan (no parameter values) after a few
    # runs; both plans must pick the partial index.
    async with queue.pool.acquire() as conn:
        await _fill(conn, schema, available=500, finished=50_000)
        await conn.execute(f'ANALYZE "{schema}".jobs')
        scans = await _picked_scans(conn, queue, plan_cache_mode)
    assert scans == [("Index Scan", "jobs_fetch_idx")]


async def test_claim_reads_jobs_fetch_idx_before_any_analyze(queue: JobStore, schema: str) -> None:
    # A fresh table (no statistics yet) must not tempt the planner into a sequential scan.
    async with queue.pool.acquire() as conn:
        await _fill(conn, schema, available=2_000, finished=0)
        scans = await _picked_scans(conn, queue)
    assert scans == [("Index Scan", "jobs_fetch_idx")]


async def test_claim_really_claims_through_the_index(queue: JobStore, schema: str) -> None:
    async with queue.pool.acquire() as conn:
        await _fill(conn, schema, available=40, finished=1_000)
    claimed = await queue.fetch("default", 32, "node-1")
    assert [job.args["i"] for job in claimed] == list(range(1, 33))
    assert {job.state for job in claimed} == {"executing"}


async def test_claimed_jobs_carry_every_column(queue: JobStore, schema: str) -> None:
    # Job.from_claim reads the claim's row by position: every field must land where
    # Job.from_record (by name) puts it, for a row with every column set.
    async with queue.pool.acquire() as conn:
        await conn.execute(f"""
            INSERT INTO "{schema}".jobs (queue, kind, args, meta, priority, max_attempts, timeout, tags,
                                         unique_key, errors, result, attempt, completed_at)
            VALUES ('default', 'k', '{{"to": "a@b.c"}}', '{{"vars": {{"x": 1}}}}', 3, 7, 2.5, '{{t1,t2}}',
                    'key-1', '[{{"error": "boom"}}]', '{{"sent": true}}', 1, now())""")
    (claimed,) = await queue.fetch("default", 32, "node-1")
    async with queue.pool.acquire() as conn:
        record = await conn.fetchrow(f'SELECT {JOB_COLUMNS} FROM "{schema}".jobs WHERE id = $1', claimed.id)
    assert claimed == Job.from_record(record)
    assert (claimed.args, claimed.meta, claimed.tags, claimed.errors, claimed.result) == (
        {"to": "a@b.c"}, {"vars": {"x": 1}}, ["t1", "t2"], [{"error": "boom"}], {"sent": True})
    assert (claimed.priority, claimed.attempt, claimed.max_attempts, claimed.timeout, claimed.unique_key,
            claimed.attempted_by, claimed.state) == (3, 2, 7, 2.5, "key-1", "node-1", "executing")
