"""Postgres restarted (fast, then immediate) under a flow of 500 jobs: the engine keeps
running, every job finishes exactly once, and work resumes within seconds of each restart."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

from engine.core.job import JobSpec
from tests.faults.conftest import client_engine, job_rows
from tests.support.ledger import KIND, finished_ids, read_ledger, started_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

JOBS = 500
SPREAD = 6.0  # the jobs fall due evenly over this many seconds: a flow, not a backlog


async def restart(pg, mode: str, ledger_path) -> tuple[float, float]:
    """Restart the server; returns (seconds it was down, seconds until a job started after it was back)."""
    down_at = time.time()
    await anyio.to_thread.run_sync(pg.stop, mode)
    await anyio.to_thread.run_sync(pg.start)
    up_at = time.time()
    await wait_until(lambda: started_ids(read_ledger(ledger_path), after=up_at), timeout=20)
    resumed = min(e.at for e in read_ledger(ledger_path) if e.event == "start" and e.at > up_at)
    return up_at - down_at, resumed - up_at


async def all_completed(url: str, schema: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return await conn.fetchval(f'SELECT count(*) FILTER (WHERE state = \'completed\') = {JOBS} '
                                   f'FROM "{schema}".jobs')
    finally:
        await conn.close()


async def test_engine_rides_out_postgres_restarts(own_postgres, spawn_engine, schema, ledger_path) -> None:
    url = own_postgres.url
    engine = await spawn_engine(url, schema, lifeline={"heartbeat_interval": 0.5, "rescue_after": 10},
                                queues={"default": {"concurrency": 10}})
    async with client_engine(url, schema) as client:
        await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 0.02}, delay=SPREAD * n / JOBS)
                                   for n in range(JOBS)])

    def finished() -> int:
        return len(finished_ids(read_ledger(ledger_path)))

    await wait_until(lambda: finished() >= JOBS // 5, timeout=20)
    fast = await restart(own_postgres, "fast", ledger_path)
    await wait_until(lambda: finished() >= JOBS // 2, timeout=20)
    immediate = await restart(own_postgres, "immediate", ledger_path)
    await wait_until(lambda: all_completed(url, schema), timeout=30, interval=0.2)

    print(f"\nPostgres restart -m fast: down {fast[0]:.2f}s, first job started {fast[1]:.2f}s after it was back; "
          f"-m immediate: down {immediate[0]:.2f}s, first job {immediate[1]:.2f}s after")
    assert engine.alive
    entries = read_ledger(ledger_path)
    assert len(finished_ids(entries)) == JOBS
    starts = started_ids(entries)
    twice = [job_id for job_id, n in starts.items() if n > 1]
    rows = await job_rows(url, schema)
    assert not twice, f"jobs ran twice: {[dict(rows[i]) for i in twice]}"
    assert fast[1] < 3 and immediate[1] < 3
