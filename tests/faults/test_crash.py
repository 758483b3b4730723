"""SIGKILL with jobs executing: a second process rescues them; every job ends exactly once."""

from __future__ import annotations

import signal

import pytest

from engine.core.job import JobSpec
from tests.faults.conftest import BASE_SETTINGS, job_rows
from tests.support.ledger import KIND, finished_ids, read_ledger, started_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

HANGING = 60     # executing when the process dies: hang on attempt 1, finish at once when rescued
WAITING = 40     # still available when it dies


async def test_sigkill_with_jobs_executing_loses_nothing(spawn_engine, client, pg_url, schema,
                                                          ledger_path) -> None:
    first = await spawn_engine(pg_url, schema, queues={"default": {"concurrency": HANGING}})
    hanging = await client.enqueue_many([JobSpec(kind=KIND, args={"first_sleep": 600}) for _ in range(HANGING)])
    waiting = await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 0.01}) for _ in range(WAITING)])
    await wait_until(lambda: len(started_ids(read_ledger(ledger_path))) >= HANGING, timeout=15)

    killed_at = first.send(signal.SIGKILL)
    await first.wait_exit(5)
    second = await spawn_engine(pg_url, schema, queues={"default": {"concurrency": 20}})

    async def all_completed() -> bool:
        rows = await job_rows(pg_url, schema)
        return all(row["state"] == "completed" for row in rows.values())

    await wait_until(all_completed, timeout=30, interval=0.1)
    rows = await job_rows(pg_url, schema)
    entries = read_ledger(ledger_path)
    finishes = finished_ids(entries)
    assert len(rows) == HANGING + WAITING
    assert all(finishes[job_id] == 1 for job_id in rows), "a job finished twice or never"
    assert not started_ids(entries, pid=first.pid, after=killed_at), "the dead process started a job"

    lifeline = BASE_SETTINGS["lifeline"]
    restarted = started_ids(entries, pid=second.pid)
    for job in hanging:
        assert rows[job.id]["rescued"] == 1 and rows[job.id]["attempt"] == 2
        assert '"kind": "rescued"' in rows[job.id]["errors"]
        assert restarted[job.id] == 1
    for job in waiting:
        assert rows[job.id]["rescued"] == 0 and rows[job.id]["attempt"] == 1 and restarted[job.id] == 1

    rescue_times = [e.at - killed_at for e in entries if e.event == "start" and e.pid == second.pid
                    and e.job_id in {job.id for job in hanging}]
    slowest = max(rescue_times)
    print(f"\nrescue after SIGKILL: first rescued job started {min(rescue_times):.2f}s, last {slowest:.2f}s "
          f"after the kill (rescue_after={lifeline['rescue_after']}s, heartbeat={lifeline['heartbeat_interval']}s)")
    assert slowest < lifeline["rescue_after"] + lifeline["heartbeat_interval"] + 2.0
