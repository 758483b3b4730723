"""Alerts (migration 011): the evaluation round's lease, the metric reads, states and
history; one part of :class:`engine.db.store.JobStore`. The decisions are
engine/maintenance/alerts.py's; this module only reads and writes.

Example::

    async with store.alert_round(min_gap=12.0, node="web-1") as round_:
        if round_ is not None:                       # None: another node has this round
            backlog = await store.alert_backlog(round_.conn, "default")
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.db.base import StoreBase

# backlog counts stop here (per part): enough to compare with any sensible threshold.
BACKLOG_CAP = 100_000
# failure_rate of one definition reads at most its newest this many jobs.
DEFINITION_SAMPLE = 1_000


@dataclass(frozen=True, slots=True)
class AlertRound:
    """One evaluation: its connection (in the transaction that holds the lease) and its time."""

    conn: asyncpg.Connection
    at: datetime


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    row["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
    return row


class AlertRows(StoreBase):
    """Reads and writes of alert_states, alert_history and alert_rounds."""

    @asynccontextmanager
    async def alert_round(self, *, min_gap: float, node: str,
                          at: datetime | None = None) -> AsyncIterator[AlertRound | None]:
        """A transaction holding the evaluation lease, or None when another node holds it or
        evaluated less than ``min_gap`` seconds ago. Everything written through the round's
        connection commits together when the block ends (or not at all)."""
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval(self.statements.ALERT_ROUND_TAKE, min_gap, node, at)
            yield None if taken is None else AlertRound(conn, taken)

    async def alert_states(self, conn: asyncpg.Connection | None = None) -> dict[str, dict[str, Any]]:
        """Every alert's stored state by name: ``{state, since, value, detail, evaluated_at}``."""
        if conn is None:
            async with self.pool.acquire() as pooled:
                return await self.alert_states(pooled)
        return {r["name"]: _row(r) for r in await conn.fetch(self.statements.ALERT_STATE_LIST)}

    async def alert_save(self, conn: asyncpg.Connection, name: str, state: str, since: datetime,
                         value: float | None, detail: dict[str, Any], at: datetime) -> None:
        await conn.execute(self.statements.ALERT_STATE_SAVE, name, state, since, value, _json(detail), at)

    async def alert_record(self, conn: asyncpg.Connection, name: str, event: str, value: float | None,
                           threshold: float, detail: dict[str, Any], at: datetime) -> None:
        await conn.execute(self.statements.ALERT_HISTORY_RECORD, name, event, value, threshold, _json(detail), at)

    async def alert_history(self, names: Sequence[str], limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """The last ``limit`` transitions of each alert, newest first."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.ALERT_HISTORY_RECENT, list(names), limit)
        history: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for record in records:
            history[record["name"]].append(_row(record))
        return history

    async def alert_prune(self, conn: asyncpg.Connection, keep: float, at: datetime) -> None:
        """Forget transitions older than ``keep`` seconds before ``at``."""
        await conn.execute(self.statements.ALERT_HISTORY_PRUNE, keep, at)

    # --- the metrics ---------------------------------------------------------------------

    async def alert_backlog(self, conn: asyncpg.Connection, queue: str | None) -> int:
        """Jobs waiting (available, or scheduled and due) in ``queue`` (None: all), capped."""
        s = self.statements
        if queue is None:
            return int(await conn.fetchval(s.ALERT_METRIC_BACKLOG, BACKLOG_CAP))
        return int(await conn.fetchval(s.ALERT_METRIC_QUEUE_BACKLOG, queue, BACKLOG_CAP))

    async def alert_oldest_waiting(self, conn: asyncpg.Connection, queue: str | None) -> dict[str, float]:
        """Seconds the oldest available job of each queue (or only ``queue``) has waited."""
        s = self.statements
        queues = [queue] if queue is not None else [r["queue"] for r in await conn.fetch(s.ALERT_WAITING_QUEUES)]
        waits = {}
        for name in queues:
            seconds = await conn.fetchval(s.DASHBOARD_OLDEST_AVAILABLE, name)
            if seconds is not None:
                waits[name] = max(0.0, float(seconds))
        return waits

    async def alert_no_consumer(self, conn: asyncpg.Connection, queue: str | None, live_within: float) -> list[str]:
        """Queues with available jobs that no node heartbeating within ``live_within`` s runs."""
        records = await conn.fetch(self.statements.ALERT_METRIC_NO_CONSUMER, live_within, queue)
        return [r["queue"] for r in records]

    async def alert_failures(self, conn: asyncpg.Connection, *, queue: str | None, definition: str | None,
                             window: float) -> tuple[int, int]:
        """(discarded, finished) over the last ``window`` seconds: from the rollup, or for a
        definition from its newest jobs."""
        s = self.statements
        if definition is not None:
            record = await conn.fetchrow(s.ALERT_METRIC_DEFINITION_FAILURE_RATE, definition, window,
                                         DEFINITION_SAMPLE)
        else:
            record = await conn.fetchrow(s.ALERT_METRIC_FAILURE_RATE, queue, window)
        assert record is not None
        return int(record["failed"]), int(record["finished"])

    async def alert_lost_nodes(self, conn: asyncpg.Connection, queue: str | None, *, rescue_after: float,
                               window: float) -> list[str]:
        """Nodes silent past ``rescue_after`` or lost in the last ``window`` seconds."""
        records = await conn.fetch(self.statements.ALERT_METRIC_NODE_LOST, rescue_after, window, queue)
        return [r["name"] for r in records]

    async def alert_cron_entries(self, conn: asyncpg.Connection, definition: str | None) -> list[dict[str, Any]]:
        """Enabled cron definitions (or only ``definition``) with schedule, last slot, active since."""
        return [dict(r) for r in await conn.fetch(self.statements.ALERT_CRON_ENTRIES, definition)]
