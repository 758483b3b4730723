"""Versioned, additive SQL migrations from ``engine/db/migrations/NNN_name.sql``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from engine.db import sql

MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str


def available_migrations() -> list[Migration]:
    """Every migration shipped in the package, in version order."""
    found = []
    for entry in resources.files("engine.db.migrations").iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, schema: str) -> list[Migration]:
    """Apply pending migrations to ``schema`` and return them.

    Runs in one transaction under an advisory lock, so processes starting together
    apply each migration exactly once and none sees a half-migrated schema.

    Example::

        conn = await asyncpg.connect(url)
        applied = await migrate(conn, "jobengine")
    """
    statements = sql.render(schema)
    async with conn.transaction():
        await conn.execute(statements.MIGRATION_LOCK, f"jobengine.migrate.{schema}")
        await conn.execute(statements.MIGRATION_TABLE_CREATE)
        done = {row["version"] for row in await conn.fetch(statements.MIGRATION_LIST_APPLIED)}
        pending = [m for m in available_migrations() if m.version not in done]
        for migration in pending:
            await conn.execute(sql.render_migration(migration.text, schema))
            await conn.execute(statements.MIGRATION_RECORD, migration.version, migration.name)
    return pending
