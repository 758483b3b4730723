"""Definitions' rows: one part of :class:`engine.db.store.JobStore`.

A definition is a row of ``cron_entries`` (migration 008); the cron entry methods of
:mod:`engine.db.cron_rows` read the cron-triggered ones. engine/cron/definitions.py is
the only caller of these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from engine.core.job import Job
from engine.db.base import StoreBase
from engine.db.connection import json_text
from engine.db.rows import InsertRow

# The columns a definition is written with, in the order DEFINITION_INSERT/REPLACE take them.
DEFINITION_COLUMNS = ("name", "description", "tags", "enabled", "trigger_type", "schedule", "timezone",
                      "overlap", "catch_up", "once_at")
BuildRow = Callable[[dict[str, Any]], InsertRow]


class DefinitionRows(StoreBase):
    """Definitions: list, write, run, fire once, their runs, and the counters' tally."""

    async def definition_list(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every definition (or the one named), by name, with its last run's state."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.DEFINITION_LIST, name)
        return [{**dict(r), "job": json.loads(r["job"])} for r in records]

    async def definition_page(self, *, kind: str | None, tag: str | None, enabled: bool | None, text: str | None,
                              after: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` definitions by name after ``after``, filtered (None: any)."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.DEFINITION_PAGE, kind, tag, enabled, text, after, limit)
        return [{**dict(r), "job": json.loads(r["job"])} for r in records]

    async def definition_facets(self) -> dict[str, Any]:
        """``{"total", "kinds", "tags"}`` over every definition."""
        async with self.pool.acquire() as conn:
            return dict(await conn.fetchrow(self.statements.DEFINITION_FACETS))

    def _values(self, row: dict[str, Any], actor: str, now: datetime) -> list[Any]:
        return [*(row[column] for column in DEFINITION_COLUMNS), json_text(row["job"]), actor, now]

    async def definition_insert(self, row: dict[str, Any], actor: str, now: datetime) -> bool:
        """Add a definition; False when the name is taken."""
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.DEFINITION_INSERT, *self._values(row, actor, now))
        return name is not None

    async def definition_replace(self, row: dict[str, Any], actor: str, now: datetime,
                                 expected_updated_at: datetime | None) -> bool:
        """Replace a runtime definition whole; False when absent, from the config, or (with
        ``expected_updated_at``) changed since the editor read it."""
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.DEFINITION_REPLACE, *self._values(row, actor, now),
                                       expected_updated_at)
        return name is not None

    async def definition_set_enabled(self, name: str, enabled: bool, actor: str, now: datetime) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.DEFINITION_SET_ENABLED, name, enabled, actor, now) is not None

    async def definition_run(self, name: str, build_row: BuildRow) -> Job | None:
        """Insert one job from definition ``name``'s document and count it, in one
        transaction; None when there is no such definition."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            document = await conn.fetchval(s.DEFINITION_LOCK_JOB, name)
            if document is None:
                return None
            (job,) = await self.insert([build_row(json.loads(document))], conn=conn)
            await conn.execute(s.DEFINITION_RECORD_RUN, name, job.id)
        return job

    async def definition_pending_once(self) -> list[dict[str, Any]]:
        """Once definitions still to fire (name, once_at), soonest first."""
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.DEFINITION_PENDING_ONCE)]

    async def definition_fire_once(self, name: str, at: datetime, now: datetime, build_row: BuildRow) -> Job | None:
        """Insert once definition ``name``'s job if this call claims its one firing (same
        transaction as the claim); None when it fired already, elsewhere or here, or changed."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            document = await conn.fetchval(s.DEFINITION_CLAIM_ONCE, name, at, now)
            if document is None:
                return None
            (job,) = await self.insert([build_row(json.loads(document))], conn=conn)
            await conn.execute(s.DEFINITION_RECORD_RUN, name, job.id)
        return job

    async def definition_runs(self, name: str, *, before: int | None, limit: int) -> list[Job]:
        """Definition ``name``'s jobs, newest first, with ids below ``before``."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.DEFINITION_RUNS, name, before, limit)
        return [Job.from_record(r) for r in records]

    async def definition_tally(self, limit: int) -> int:
        """Count up to ``limit`` finished definition jobs into their counters; returns how many."""
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval(self.statements.DEFINITION_TALLY, limit))

    async def job_edit_waiting(self, job_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Apply ``changes`` (args, priority, scheduled_at, tags, queue, max_attempts) to
        a job that has not started; None when it is in any other state (nothing changed)."""
        values: Sequence[Any] = (
            json_text(changes["args"]) if "args" in changes else None, changes.get("priority"),
            changes.get("scheduled_at"), changes.get("tags"), changes.get("queue"), changes.get("max_attempts"))
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.JOB_EDIT_WAITING, job_id, *values)
        return dict(record) if record else None
