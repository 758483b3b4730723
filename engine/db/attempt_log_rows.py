"""Attempt logs and progress (migration 010): one part of :class:`engine.db.store.JobStore`.

Example::

    await store.write_attempt_logs([(7, 1, ["12:00:01 info copied"], 0.4, "copied 4/10")], keep=200)
    attempts = await store.attempt_logs(7)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.db.base import StoreBase
from engine.db.connection import json_text

# (job id, attempt, new lines, progress or None, progress text or None)
AttemptLogRow = tuple[int, int, list[str], float | None, str | None]


class AttemptLogRows(StoreBase):
    """Writes and reads of attempt_logs."""

    async def write_attempt_logs(self, rows: Sequence[AttemptLogRow], *, keep: int) -> None:
        """Append each attempt's new lines (keeping the last ``keep``) and set its progress,
        in one statement."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.ATTEMPT_LOG_WRITE, list(columns[0]), list(columns[1]),
                               [json_text(lines) for lines in columns[2]], list(columns[3]), keep, list(columns[4]))

    async def attempt_logs(self, job_id: int) -> list[dict[str, Any]]:
        """Every attempt of ``job_id`` that logged: ``{attempt, lines, progress, ...}``."""
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.ATTEMPT_LOG_LIST, job_id)]

    async def attempt_progress(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The latest reported progress of each of ``job_ids`` that has one."""
        if not job_ids:
            return {}
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.ATTEMPT_LOG_PROGRESS, list(job_ids))
        return {r["job_id"]: dict(r) for r in records}

    async def prune_attempt_logs(self, older_than: float) -> int:
        async with self.pool.acquire() as conn:
            status = await conn.execute(self.statements.ATTEMPT_LOG_PRUNE, older_than)
        return int(status.split()[-1])
