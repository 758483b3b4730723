"""The rollup behind the dashboard's charts (migration 010): finished jobs per minute, queue
and kind, aggregated in bulk by a maintenance pass; one part of
:class:`engine.db.store.JobStore`.

Example::

    mark = await store.rollup_finished()          # None: another node is rolling right now
    counts, histograms = await store.rollup_chart(step=60, since=an_hour_ago)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.db.base import StoreBase


@dataclass(frozen=True, slots=True)
class RollupPass:
    """What one pass did: the new mark, the (minute, queue, kind) groups written, and whether
    more whole minutes wait (a pass takes at most an hour of them)."""

    rolled_until: datetime | None
    groups: int
    behind: bool


class RollupRows(StoreBase):
    """Writes and reads of job_rollup."""

    async def rollup_finished(self, upto: datetime | None = None) -> RollupPass | None:
        """Roll whole minutes of finished jobs (up to ``upto``, default 30 s ago) into
        job_rollup; None when another node holds the rollup."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.ROLLUP_FINISHED, upto)
        if record is None:
            return None
        return RollupPass(record["rolled_until"], int(record["groups"]), bool(record["behind"]))

    async def rollup_prune(self, keep: float) -> int:
        """Forget rollup minutes older than ``keep`` seconds; returns how many rows went."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(self.statements.ROLLUP_PRUNE, keep)
        return int(status.split()[-1])

    async def rollup_chart(self, *, step: float, since: datetime, queue: str | None = None,
                           kind: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per ``step`` seconds from ``since``: the counts, and the wait and run histograms
        bucket by bucket (``{t, bucket, waits, runs}``)."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            # A generic plan cannot see how few minutes `minute >= $2` keeps: it read every row.
            await conn.execute(s.DASHBOARD_PLAN_CUSTOM)
            counts = await conn.fetch(s.ROLLUP_CHART_COUNTS, step, since, queue, kind)
            histograms = await conn.fetch(s.ROLLUP_CHART_HISTOGRAMS, step, since, queue, kind)
        buckets = [{"t": row["t"], "bucket": bucket, "waits": waits or 0, "runs": runs or 0}
                   for row in histograms
                   for bucket, (waits, runs) in enumerate(zip(row["waits"], row["runs"], strict=True), start=1)]
        return [dict(r) for r in counts], buckets

    async def rollup_mark(self) -> datetime | None:
        """The first minute not rolled up yet."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.ROLLUP_MARK)  # type: ignore[no-any-return]

    async def rollup_names(self) -> list[tuple[str, str]]:
        """The (queue, kind) pairs of the last week's rollup."""
        async with self.pool.acquire() as conn:
            return [(r["queue"], r["kind"]) for r in await conn.fetch(self.statements.ROLLUP_CHART_NAMES)]
