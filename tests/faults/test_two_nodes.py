"""Two engine processes on one database: every one of 10,000 jobs starts exactly once."""

from __future__ import annotations

import time

import asyncpg
import pytest

from engine.core.job import JobSpec
from tests.support.ledger import KIND, read_ledger, started_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

JOBS = 10_000
BATCH = 1_000


async def test_two_processes_start_each_of_10000_jobs_exactly_once(spawn_engine, client, pg_url, schema,
                                                                   ledger_path) -> None:
    settings = {"queues": {"default": {"concurrency": 50}}}
    first = await spawn_engine(pg_url, schema, **settings)
    second = await spawn_engine(pg_url, schema, **settings)
    began = time.monotonic()
    ids: list[int] = []
    for _ in range(JOBS // BATCH):  # inserted while both run, so they race for every batch
        jobs = await client.enqueue_many([JobSpec(kind=KIND, args={}) for _ in range(BATCH)])
        ids.extend(job.id for job in jobs)

    conn = await asyncpg.connect(pg_url)
    try:
        await wait_until(lambda: conn.fetchval(f"""SELECT count(*) = 0 FROM "{schema}".jobs
                                                   WHERE state <> 'completed'"""), timeout=60, interval=0.1)
    finally:
        await conn.close()
    took = time.monotonic() - began

    entries = read_ledger(ledger_path)
    starts = started_ids(entries)
    by_first, by_second = started_ids(entries, pid=first.pid), started_ids(entries, pid=second.pid)
    print(f"\n{JOBS} jobs on two processes in {took:.1f}s ({JOBS / took:.0f} jobs/s); "
          f"split {len(by_first)} / {len(by_second)}")
    assert sorted(starts) == sorted(ids)
    assert set(starts.values()) == {1}, "a job started twice"
    assert by_first and by_second and len(by_first) + len(by_second) == JOBS, "both processes took part"
