"""Cron entries' rows: one part of :class:`engine.db.store.JobStore`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from engine.core.job import Job
from engine.db.base import StoreBase
from engine.db.connection import json_text
from engine.db.rows import InsertRow


class CronRows(StoreBase):
    """Cron entries and their slots (engine/cron/store.py is their only caller)."""

    async def cron_upsert_config(self, entries: Sequence[dict[str, Any]], now: datetime) -> list[str]:
        """Write the config's entries (each with a ``config_hash``); returns the names changed."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.CRON_UPSERT_CONFIG, json_text(list(entries)), now)
        return [r["name"] for r in records]

    async def cron_insert(self, entry: dict[str, Any], now: datetime) -> bool:
        """Add a runtime entry; False when the name is taken."""
        e = entry
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.CRON_INSERT, e["name"], e["schedule"], e["timezone"],
                                       json_text(e["job"]), e["enabled"], e["overlap"], e["catch_up"], now)
        return name is not None

    async def cron_update(self, entry: dict[str, Any], now: datetime) -> bool:
        """Replace an entry's definition (not its enabled flag); False when absent."""
        e = entry
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.CRON_UPDATE, e["name"], e["schedule"], e["timezone"],
                                       json_text(e["job"]), e["overlap"], e["catch_up"], now)
        return name is not None

    async def cron_set_enabled(self, name: str, enabled: bool, now: datetime) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.CRON_SET_ENABLED, name, enabled, now) is not None

    async def cron_delete(self, name: str) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.CRON_DELETE, name) is not None

    async def cron_list(self, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        """Every entry (by name) with its bookkeeping and its last job's state."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.CRON_LIST, enabled_only)
        return [{**dict(r), "job": json.loads(r["job"])} for r in records]

    async def cron_fire(self, name: str, slot: datetime, schedule: str, timezone: str,
                        build_row: Callable[[dict[str, Any]], InsertRow]) -> tuple[str, Job | None]:
        """Insert the job of one slot, at most once ever, in one transaction with the claim.
        ``build_row(job_document)`` makes the insert row (raising rolls the claim back).
        Returns ("inserted", job), ("skipped", None) under overlap 'skip', or ("taken", None)
        when the slot was claimed already, by any process, or the entry changed."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            claim = await conn.fetchrow(s.CRON_CLAIM_SLOT, name, slot, schedule, timezone)
            if claim is None:
                return "taken", None
            if claim["still_running"]:
                return "skipped", None
            (job,) = await self.insert([build_row(json.loads(claim["job"]))], conn=conn)
            await conn.execute(s.CRON_SET_LAST_JOB, name, job.id)
        return "inserted", job

