"""The rollup behind the charts (engine/maintenance/rollup.py, sql.ROLLUP_FINISHED): whole
minutes of finished jobs aggregated once, histograms that give the percentiles, a view for
users, one node at a time, and a read of jobs_finished_idx rather than the table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest_asyncio

from engine.db import sql
from engine.db.store import JobStore
from engine.maintenance.rollup import Rollup
from tests.support.plans import explain, scans

# (minutes ago it finished, queue, kind, state, wait ms, run ms)
FINISHED = [
    (3, "mail", "mail", "completed", 4, 150),
    (3, "mail", "mail", "completed", 40, 1500),
    (3, "mail", "mail", "discarded", 400, 15),
    (2, "default", "http", "completed", 0, 3),
    (2, "default", "http", "cancelled", None, None),  # cancelled before it ran
]


@pytest_asyncio.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[JobStore]:
    jobs = JobStore(pg_url, schema=schema)
    await jobs.open()
    await jobs.migrate()
    yield jobs
    await jobs.close()


async def _fill(store: JobStore, now: datetime) -> None:
    async with store.pool.acquire() as conn:
        for ago, queue, kind, state, wait, run in FINISHED:
            finished = now - timedelta(minutes=ago) + timedelta(seconds=10)
            started = finished - timedelta(milliseconds=run) if run is not None else None
            scheduled = started - timedelta(milliseconds=wait) if started is not None else finished
            await conn.execute(
                f"INSERT INTO {sql.quote_ident(store.schema)}.jobs (queue, kind, state, attempt, scheduled_at, "
                "attempted_at, completed_at, discarded_at, cancelled_at) VALUES ($1, $2, $3, 1, $4, $5, "
                "CASE WHEN $3 = 'completed' THEN $6::timestamptz END, "
                "CASE WHEN $3 = 'discarded' THEN $6::timestamptz END, "
                "CASE WHEN $3 = 'cancelled' THEN $6::timestamptz END)",
                queue, kind, state, scheduled, started, finished)


async def _rows(store: JobStore) -> list[dict[str, object]]:
    async with store.pool.acquire() as conn:
        records = await conn.fetch(f"SELECT * FROM {sql.quote_ident(store.schema)}.job_rollup ORDER BY minute, queue")
    return [dict(r) for r in records]


async def test_whole_minutes_are_rolled_up_once_with_their_histograms(store: JobStore) -> None:
    now = datetime.now().astimezone().replace(second=0, microsecond=0)
    await _fill(store, now)
    while (await store.rollup_finished(now - timedelta(minutes=3))).behind:  # type: ignore[union-attr]
        pass  # the week of (empty) history before the test's minutes, an hour per pass
    done = await store.rollup_finished(now - timedelta(minutes=2))  # the 3-minutes-ago minute only
    assert done is not None and done.groups == 1 and done.rolled_until == now - timedelta(minutes=2)
    (mail,) = await _rows(store)
    assert (mail["queue"], mail["completed"], mail["discarded"], mail["cancelled"], mail["ran"]) == ("mail", 2, 1, 0, 3)
    bounds = sql.ROLLUP_BUCKET_BOUNDS_MS
    assert len(mail["wait_hist"]) == len(bounds) + 1 and sum(mail["wait_hist"]) == 3
    # Bucket i counts times from bound i-1 up to bound i (bucket 0: under the first bound).
    assert mail["wait_hist"][bounds.index(2) + 1] == 1 and mail["wait_hist"][bounds.index(20) + 1] == 1  # 4, 40 ms
    assert mail["run_hist"][bounds.index(1000) + 1] == 1 and mail["run_hist"][bounds.index(10) + 1] == 1  # 1.5 s, 15 ms

    again = await store.rollup_finished(now)  # the next minutes; the first is not counted twice
    assert again is not None and again.groups == 1
    rows = await _rows(store)
    assert [(r["queue"], r["completed"], r["cancelled"], r["ran"]) for r in rows] == [
        ("mail", 2, 0, 3), ("default", 1, 1, 1)]
    assert (await store.rollup_finished(now)).groups == 0  # type: ignore[union-attr]
    async with store.pool.acquire() as conn:
        view = await conn.fetch(f"SELECT * FROM {sql.quote_ident(store.schema)}.job_history ORDER BY minute")
    first = view[0]
    assert (str(first["failure_rate"]), float(first["avg_run_ms"])) == ("0.3333", 555.0)


async def test_one_node_rolls_at_a_time(store: JobStore) -> None:
    async with store.pool.acquire() as holder, holder.transaction():
        await holder.execute(f"SELECT 1 FROM {sql.quote_ident(store.schema)}.job_rollup_state FOR UPDATE")
        assert await store.rollup_finished() is None
        assert await Rollup(store).roll_once() == 0


async def test_a_pass_reads_the_finished_index_and_catches_up_an_hour_at_a_time(store: JobStore) -> None:
    async with store.pool.acquire() as conn:
        plan = await explain(conn, store.statements.ROLLUP_FINISHED, None)
        assert ("Index Scan", "jobs_finished_idx") in scans(plan) or \
            ("Bitmap Index Scan", "jobs_finished_idx") in scans(plan), scans(plan)
    first = await store.rollup_finished()  # the mark starts a week back: an hour per statement
    assert first is not None and first.behind
    await Rollup(store).roll_once()
    caught_up = await store.rollup_finished()
    assert caught_up is not None and not caught_up.behind
