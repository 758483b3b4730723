"""What every part of the store shares: the pool, the rendered statements, the schema."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from engine.core.job import Job
from engine.db import sql
from engine.db.rows import InsertRow


class StoreBase:
    """The attributes and the insert that :class:`engine.db.store.JobStore` provides to
    its parts (cron rows, dashboard reads, dependency rows)."""

    schema: str
    statements: sql.Statements

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def _insert_rows(self, conn: asyncpg.Connection, rows: Sequence[InsertRow],
                           retries: int = ...) -> tuple[list[Job], set[int]]:
        raise NotImplementedError

    async def insert(self, rows: Sequence[InsertRow], *, conn: asyncpg.Connection | None = None) -> list[Job]:
        raise NotImplementedError
