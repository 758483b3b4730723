"""Job dependencies (``dependsOn``) in the database: locking, attaching and settling
waiting jobs (see engine/insert/dependencies.py): one part of :class:`engine.db.store.JobStore`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import asyncpg

from engine.core import backoff
from engine.core.acks import Ack
from engine.core.errors import EnqueueError
from engine.core.job import FINISHED_STATES, Job, JobState
from engine.db.base import StoreBase
from engine.db.connection import json_text
from engine.db.rows import InsertRow, missing_dependencies

# How often a dependent insert re-tries locking its dependencies, and how deep a cancel cascades.
DEPENDENCY_LOCK_RETRIES = 60
MAX_CASCADE_DEPTH = 1_000


class DependencyRows(StoreBase):
    """Locking, attaching and settling the jobs that wait for others."""

    async def _insert_waiting(self, conn: asyncpg.Connection, rows: Sequence[InsertRow]) -> list[Job]:
        """Insert rows some of which wait for dependencies: lock and mark the dependencies,
        insert, attach ``waiting_for`` and settle at once (some may be finished already),
        all in one transaction (a savepoint inside the caller's)."""
        wanted = sorted({job_id for row in rows for job_id in row.depends_on})
        for attempt in range(DEPENDENCY_LOCK_RETRIES):
            try:
                async with conn.transaction():
                    found = {r["id"]: r["state"] for r in await conn.fetch(self.statements.DEPENDENCY_LOCK, wanted)}
                    error = missing_dependencies(wanted, found)
                    if error is not None:
                        raise error
                    jobs, created = await self._insert_rows(conn, rows)
                    return await self._attach_dependencies(conn, rows, jobs, created)
            except asyncpg.LockNotAvailableError:  # a dependency is being acked or claimed right now
                await asyncio.sleep(backoff.jittered(attempt, base=0.001, cap=0.05))
        raise EnqueueError(f"dependsOn: jobs {wanted[:10]} stayed locked; try again")

    async def _attach_dependencies(self, conn: asyncpg.Connection, rows: Sequence[InsertRow],
                                   jobs: list[Job], created: set[int]) -> list[Job]:
        s = self.statements
        waiting = [{"id": job.id, "deps": row.depends_on}
                   for row, job in zip(rows, jobs, strict=True) if job.id in created and row.depends_on]
        if not waiting:
            return jobs
        await conn.execute(s.DEPENDENCY_ATTACH, json_text(waiting))
        settled = await conn.fetch(s.DEPENDENCY_RESOLVE_JOBS, [w["id"] for w in waiting], s.insert_channel)
        changed = {r["id"]: r for r in settled}
        await self._settle_dependents(conn, [r["id"] for r in settled if r["state"] == JobState.CANCELLED])
        return [replace(job, state=changed[job.id]["state"], scheduled_at=changed[job.id]["scheduled_at"])
                if job.id in changed else job for job in jobs]

    async def _settle_dependents_of(self, conn: asyncpg.Connection, acks: Sequence[Ack],
                                    applied: dict[int, bool]) -> None:
        """After acks: settle the jobs waiting for those that finished and have dependents."""
        finished = [a.job_id for a in acks if applied.get(a.job_id) and a.state in FINISHED_STATES]
        if finished:
            await self._settle_dependents(conn, finished)

    async def _settle_dependents(self, conn: asyncpg.Connection, finished: Sequence[int]) -> None:
        """Settle the jobs waiting for ``finished``; cancelling one settles its own waiters in turn."""
        ids = list(finished)
        for _ in range(MAX_CASCADE_DEPTH):
            if not ids:
                return
            records = await conn.fetch(self.statements.DEPENDENCY_RESOLVE_DEPENDENTS, ids,
                                       self.statements.insert_channel)
            ids = [r["id"] for r in records if r["state"] == JobState.CANCELLED]

    async def settle_waiting(self, limit: int) -> int:
        """The sweeper's pass: settle up to ``limit`` waiting jobs with a dependency already
        finished or gone; returns how many it looked at."""
        s = self.statements
        async with self.pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(s.DEPENDENCY_LIST_SETTLED, limit)]
            if ids:
                async with conn.transaction():
                    records = await conn.fetch(s.DEPENDENCY_RESOLVE_JOBS, ids, s.insert_channel)
                    await self._settle_dependents(conn, [r["id"] for r in records if r["state"] == JobState.CANCELLED])
        return len(ids)

