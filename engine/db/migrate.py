"""Versioned, additive SQL migrations from ``engine/db/migrations/NNN_name.sql``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from engine.db import sql

MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# A migration may end with a part that runs after the transaction commits, one statement at
# a time: CREATE INDEX CONCURRENTLY cannot run in a transaction, and it is how an index is
# added to a big table without holding back inserts and acks while it builds.
AFTER_COMMIT = "-- jobengine: after commit"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def transactional(self) -> str:
        """The part applied once, inside the migration transaction."""
        return self.text.split(AFTER_COMMIT, 1)[0]

    @property
    def after_commit(self) -> list[str]:
        """The statements run outside any transaction on every ``migrate``: each one must be
        idempotent (``IF NOT EXISTS``), so an interrupted build is finished next time."""
        if AFTER_COMMIT not in self.text:
            return []
        return _statements(self.text.split(AFTER_COMMIT, 1)[1])


def _statements(text: str) -> list[str]:
    """Split on a ``;`` that ends a line outside a ``$$`` body; comment lines dropped."""
    found: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--") and not current:
            continue
        current.append(line)
        body = "\n".join(current)
        if line.rstrip().endswith(";") and body.count("$$") % 2 == 0:
            found.append(body.strip())
            current = []
    if "\n".join(current).strip():
        found.append("\n".join(current).strip())
    return found


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
            await conn.execute(sql.render_migration(migration.transactional, schema))
            await conn.execute(statements.MIGRATION_RECORD, migration.version, migration.name)
    await _after_commit(conn, statements)
    return pending


async def _after_commit(conn: asyncpg.Connection, statements: sql.Statements) -> None:
    """Run every migration's after-commit statements, unless another process is running
    them right now (it holds the session lock): a starting node does not wait for an index
    build that another node already does."""
    steps = [step for m in available_migrations() for step in m.after_commit]
    if not steps:
        return
    key = f"jobengine.migrate.after-commit.{statements.schema}"
    if not await conn.fetchval(statements.MIGRATION_TRY_SESSION_LOCK, key):
        return
    try:
        for step in steps:
            await conn.execute(sql.render_migration(step, statements.schema))
    finally:
        await conn.execute(statements.MIGRATION_SESSION_UNLOCK, key)
