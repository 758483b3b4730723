"""Shared rate limits and global concurrency, held by two real engine processes
(``python -m engine.cli start``) on one database, measured from what ran."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from engine import Engine, JobSpec
from engine.core.config import QueueConfig
from engine.core.registry import Registry
from engine.db.rows import ClaimWindow
from engine.queues.limits import GLOBAL_RECHECK, JITTER, QueueLimits, next_claim_in
from tests.flow import workers
from tests.support.scripted import scripted_registry
from tests.support.waiting import wait_until


def max_in_window(stamps: list[datetime], window: float) -> int:
    """The most stamps in any half-open window [t, t + window)."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= timedelta(seconds=window):
            start += 1
        best = max(best, end - start + 1)
    return best


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


async def finished_jobs(client: Engine, queue: str, count: int, timeout: float) -> list[Any]:
    async def all_done() -> list[Any] | None:
        jobs = await client.list_jobs(queue=queue, limit=count + 10)
        done = [job for job in jobs if job.state == "completed"]
        return done if len(done) == count else None

    return await wait_until(all_done, timeout=timeout)  # type: ignore[no-any-return]


async def test_rate_limit_is_held_by_two_processes_together(start_engine, engine_processes) -> None:
    client = await start_engine(workers.register(Registry()))  # insert-only
    rate, window, count = 10, 1.0, 45
    # Each process runs at most 6 at once and a job takes 0.3 s, so neither can take a
    # whole window's 10 alone: both must take part, and the limit must hold across them.
    queues = {"rated": {"concurrency": 6, "rate_limit": f"{rate}/s"}}
    async with engine_processes(2, queues=queues) as procs:
        began = time.monotonic()
        await client.enqueue_many([JobSpec(kind=workers.SLEEP_KIND, args={"sleep": 0.3}, queue="rated")
                                   for _ in range(count)])
        jobs = await finished_jobs(client, "rated", count, timeout=20)
        elapsed = time.monotonic() - began
    starts = [job.attempted_at for job in jobs]
    busiest = max_in_window(starts, window)
    span = (max(starts) - min(starts)).total_seconds()
    by_node = {node: sum(job.attempted_by == node for job in jobs) for node in procs.nodes}
    print(f"\nrate {rate}/{window:g}s, two processes: {count} jobs in {elapsed:.2f}s, first to last start "
          f"{span:.2f}s, busiest {window:g}s window {busiest}, per node {by_node}")
    assert busiest == rate  # held, and used to the full
    assert span >= (count // rate - 0.05) * window  # 45 jobs at 10/s: the last starts 4 windows after the first
    assert all(by_node.values())  # both processes took part


async def test_rate_limit_per_minute_holds_back_the_rest(start_engine, engine_processes) -> None:
    client = await start_engine(workers.register(Registry()))
    queues = {"mailers": {"concurrency": 3, "rate_limit": "5/min"}}
    async with engine_processes(2, queues=queues) as procs:
        # A job takes longer than a poll: one process cannot run its 3 and then 2 more alone.
        await client.enqueue_many([JobSpec(kind=workers.SLEEP_KIND, args={"sleep": 1.0}, queue="mailers")
                                   for _ in range(12)])
        jobs = await finished_jobs(client, "mailers", 5, timeout=15)
        # An observation window, not a settle: both processes have free slots and 7 jobs
        # waiting, and are woken by every poll; for 2 more seconds nothing else may start.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            stats = (await client.stats())["mailers"]
            assert stats.get("completed", 0) + stats.get("executing", 0) == 5, stats
            await asyncio.sleep(0.05)
    assert {job.attempted_by for job in jobs} == set(procs.nodes)
    print(f"\nrate 5/min, two processes of concurrency 3: 5 started, {12 - 5} held back for the minute")


async def test_global_concurrency_is_held_by_two_processes_together(start_engine, engine_processes) -> None:
    client = await start_engine(workers.register(Registry()))
    limit, count, sleep = 3, 18, 0.3
    # Per process at most 2 at once (4 together, were there no global limit): 3 running at
    # once means both processes ran jobs side by side, and never a 4th.
    queues = {"capped": {"concurrency": 2, "global_limit": limit}}
    async with engine_processes(2, queues=queues) as procs:
        began = time.monotonic()
        await client.enqueue_many([JobSpec(kind=workers.SLEEP_KIND, args={"sleep": sleep}, queue="capped")
                                   for _ in range(count)])
        jobs = await finished_jobs(client, "capped", count, timeout=20)
        elapsed = time.monotonic() - began
    ran = [(job.result["started"], job.result["ended"]) for job in jobs]
    claimed = [(job.attempted_at.timestamp(), job.completed_at.timestamp()) for job in jobs]
    pids = {job.result["pid"] for job in jobs}
    print(f"\nglobal_limit {limit}, two processes of concurrency 2: {count} jobs of {sleep}s in {elapsed:.2f}s "
          f"(ideal {count / limit * sleep:.1f}s); most running at once {max_overlap(ran)}, "
          f"most claimed at once {max_overlap(claimed)}; per node "
          f"{ {node: sum(job.attempted_by == node for job in jobs) for node in procs.nodes} }")
    assert max_overlap(ran) == limit and max_overlap(claimed) == limit
    assert len(pids) == 2


# --- the limit arithmetic, without processes ---------------------------------------------------------


def test_limits_come_from_queue_config() -> None:
    assert QueueLimits.from_config(QueueConfig()) is None  # no limits: the plain claim
    assert QueueLimits.from_config(QueueConfig(rate_limit="100/min", global_limit=4)) == QueueLimits(100, 60.0, 4)


@pytest.mark.parametrize(("limits", "seen", "wanted", "claimed", "expected"), [
    (QueueLimits(10, 60.0), dict(quota=5, recent=5, oldest=-20.0, running=0), 10, 5, 40.005),
    (QueueLimits(10, 60.0), dict(quota=10, recent=0, oldest=None, running=0), 10, 10, None),  # got all
    (QueueLimits(10, 60.0), dict(quota=10, recent=0, oldest=None, running=0), 20, 10, 60.005),
    (QueueLimits(10, 60.0), dict(quota=8, recent=0, oldest=None, running=0), 8, 3, None),  # ran dry
    (QueueLimits(global_limit=3), dict(quota=1, recent=0, oldest=None, running=2), 5, 1, GLOBAL_RECHECK),
    (QueueLimits(10, 60.0, 3), dict(quota=0, recent=10, oldest=-59.0, running=3), 5, 0, 1.005),
])
def test_next_claim_waits_for_the_limit_that_held_it_back(limits, seen, wanted, claimed, expected) -> None:
    clock = datetime(2024, 1, 15, tzinfo=UTC)
    oldest = None if seen["oldest"] is None else clock + timedelta(seconds=seen["oldest"])
    window = ClaimWindow(quota=seen["quota"], recent=seen["recent"], oldest=oldest, running=seen["running"],
                         clock=clock)
    result = next_claim_in(limits, window, wanted, claimed)
    if expected is None:
        assert result is None
    else:  # plus up to JITTER x GLOBAL_RECHECK, so held processes do not re-ask in lockstep
        assert expected <= result <= expected + JITTER * GLOBAL_RECHECK


async def test_plain_queues_never_touch_the_limits_table(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2},
                                                                       "slow": {"concurrency": 2, "global_limit": 1}})
    jobs = await engine.enqueue_many([JobSpec(kind="scripted", args={}) for _ in range(5)])
    await wait_until(lambda: len(recorder.finished) == len(jobs))
    conn = await asyncpg.connect(pg_url)
    try:
        names = [r["queue"] for r in await conn.fetch(f'SELECT queue FROM "{schema}".queue_limits')]
    finally:
        await conn.close()
    assert names in ([], ["slow"])
