"""Reads for the dashboard and the API, each cheap on a large table: one part of
:class:`engine.db.store.JobStore`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.core.job import Job, JobState
from engine.core.search import JobQuery
from engine.db import sql
from engine.db.base import StoreBase


class DashboardReads(StoreBase):
    """Reads for engine.web; every one stays cheap on a large table."""

    async def dashboard_queue_names(self) -> list[str]:
        """Queues that hold at least one job (a loose index scan)."""
        async with self.pool.acquire() as conn:
            return [r["queue"] for r in await conn.fetch(self.statements.DASHBOARD_QUEUE_NAMES)]

    async def dashboard_counts(self, queues: Sequence[str], cap: int) -> dict[str, dict[str, tuple[int, bool]]]:
        """``{queue: {state: (count, exact)}}``: exact below ``cap``, else the planner's
        estimate (never below ``cap``) with ``exact`` False."""
        s = self.statements
        counts: dict[str, dict[str, tuple[int, bool]]] = {}
        async with self.pool.acquire() as conn:
            for r in await conn.fetch(s.DASHBOARD_QUEUE_COUNTS, list(queues), cap):
                counts.setdefault(r["queue"], {})[r["state"]] = (r["count"], r["count"] < cap)
            for queue, states in counts.items():
                for state, (_count, exact) in states.items():
                    if not exact:
                        plan = await conn.fetchval(s.DASHBOARD_ESTIMATE_COUNT, queue, state)
                        plan = json.loads(plan) if isinstance(plan, str) else plan
                        states[state] = (max(cap, int(plan[0]["Plan"]["Plan Rows"])), False)
        return counts

    async def dashboard_oldest_available(self, queues: Sequence[str]) -> dict[str, float | None]:
        """Seconds the oldest due job of each queue has waited (None: nothing waiting)."""
        waits: dict[str, float | None] = {}
        async with self.pool.acquire() as conn:
            for name in queues:
                seconds = await conn.fetchval(self.statements.DASHBOARD_OLDEST_AVAILABLE, name)
                waits[name] = None if seconds is None else max(0.0, seconds)
        return waits

    async def dashboard_throughput(self, minutes: int, queue: str | None = None) -> list[dict[str, Any]]:
        """``[{minute, completed, failed}]`` for the minutes that had any, oldest first."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.DASHBOARD_THROUGHPUT, minutes, queue)
        return [dict(r) for r in records]

    async def dashboard_nodes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every heartbeat row (with ``heartbeat_age`` in seconds, by the database's clock) and
        the nodes that departed in the last day, newest first."""
        async with self.pool.acquire() as conn:
            rows = [dict(r) for r in await conn.fetch(self.statements.DASHBOARD_NODES)]
            departed = [dict(r) for r in await conn.fetch(self.statements.DASHBOARD_DEPARTED_NODES)]
        return rows, departed

    async def dashboard_job(self, job_id: int) -> tuple[Job, dict[str, Any]] | None:
        """The job and the columns Job does not carry (cancelled_at, discarded_at, rescued)."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.JOB_GET, job_id)
        if record is None:
            return None
        extra = {k: record[k] for k in ("cancelled_at", "discarded_at", "rescued")}
        return Job.from_record(record), extra

    async def dashboard_children(self, job_id: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.DASHBOARD_JOB_CHILDREN, str(job_id))]

    async def dashboard_job_page(self, *, query: JobQuery | None = None, queue: str | None = None,
                                 state: str | None = None, kind: str | None = None, tag: str | None = None,
                                 search: str | None = None, before: int | None = None, after: int | None = None,
                                 ascending: bool = False, limit: int = 50) -> list[Job]:
        """A page of jobs in id order (newest first unless ``ascending``) matching ``query``
        (engine/core/search.py) and the plain filters (``search``: text in the args);
        ``before``/``after`` are keyset cursors (ids)."""
        query = (query or JobQuery()).merged(
            queue=queue, kind=kind, states=(JobState(state),) if state else None,
            tags=(tag,) if tag else None, words=(search,) if search else None)
        params: list[Any] = []
        # A tag is checked on each (queue, state)'s tagged jobs: their index is per pair.
        if query.queue is not None or query.states or query.tags:
            queues = [query.queue] if query.queue is not None else await self.dashboard_queue_names()
            states = [s.value for s in query.states] or [s.value for s in JobState]
            params = [value for q in queues for s in states for value in (q, s)]
            if not params:
                return []  # no queue holds any job yet
        pairs = len(params) // 2
        filters, values = _indexed_terms(query, before, after)
        scanned, checks = _scanned_terms(query)
        text = sql.dashboard_job_page(self.schema, filters, pairs=pairs, ascending=ascending, scanned=scanned)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(self.statements.DASHBOARD_PLAN_CUSTOM)
            records = await conn.fetch(text, *params, *values, *checks, limit)
        return [Job.from_record(r) for r in records]

    async def dashboard_bulk(self, action: str, job_ids: Sequence[int],
                             reason: str = "cancelled by operator") -> list[int]:
        """Apply ``retry``, ``run`` (due now), ``cancel`` (waiting jobs only) or ``delete`` to
        ``job_ids`` in one statement; returns the ids it changed."""
        s = self.statements
        ids = list(job_ids)
        async with self.pool.acquire() as conn:
            if action == "retry":
                records = await conn.fetch(s.DASHBOARD_JOB_RETRY_MANY, ids, s.insert_channel)
            elif action == "run":
                records = await conn.fetch(s.DASHBOARD_JOB_RUN_NOW_MANY, ids, s.insert_channel)
            elif action == "cancel":
                records = await conn.fetch(s.DASHBOARD_JOB_CANCEL_WAITING_MANY, ids, reason)
            elif action == "delete":
                records = await conn.fetch(s.DASHBOARD_JOB_DELETE_MANY, ids)
            else:
                raise ValueError(f"unknown bulk action {action!r}")
        return sorted(r["id"] for r in records)



def _indexed_terms(query: JobQuery, before: int | None, after: int | None) -> tuple[list[str], list[Any]]:
    """The fragment names (sql.DASHBOARD_JOB_FILTERS) and their parameters, in order."""
    names: list[str] = []
    values: list[Any] = []
    for name, value in (("id", query.id), ("kind", query.kind), ("before", before), ("after", after)):
        if value is not None:
            names.append(name)
            values.append(value)
    for match in query.args:
        documents = match.documents()
        names.append("args" if len(documents) == 1 else "args_either")
        values.extend(documents)
    return names, values


def _scanned_terms(query: JobQuery) -> tuple[list[str], list[Any]]:
    """The row-by-row checks (sql.DASHBOARD_JOB_SCANNED) and their parameters, in order."""
    names: list[str] = []
    values: list[Any] = []
    for name, texts in (("words", query.words), ("error", query.errors)):
        for text in texts:
            names.append(name)
            values.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    for name, value in (("node", query.node), ("definition", query.definition)):
        if value is not None:
            names.append(name)
            values.append(value)
    for tag in query.tags:
        names.append("tag")
        values.append(tag)
    return names, values
