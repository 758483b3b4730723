"""Upgrading a running cluster: no migration from 007 on builds an index on the jobs table
inside its transaction (a plain CREATE INDEX holds a SHARE lock for the whole build, so
every insert, claim and ack waits); those indexes are built CONCURRENTLY after the commit,
and an upgraded database ends with the very indexes a fresh one has."""

from __future__ import annotations

import re
import uuid

import anyio
import asyncpg

from engine.db import sql
from engine.db.migrate import available_migrations, migrate
from tests.support.waiting import wait_until

# Migrations up to 006 shipped before builds after the commit existed (005 says how to
# pre-build its indexes by hand); from 007 on none may lock the jobs table for a build.
FIRST_CHECKED = 7
PLAIN_BUILD_ON_JOBS = re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)[^;]*?\bON\s+\{schema\}\.jobs\b",
                                 re.IGNORECASE)


def test_no_migration_from_007_on_builds_an_index_on_jobs_inside_its_transaction() -> None:
    offending = {m.version: [hit.group(0) for hit in PLAIN_BUILD_ON_JOBS.finditer(m.transactional)]
                 for m in available_migrations()
                 if m.version >= FIRST_CHECKED}
    assert {version: found for version, found in offending.items() if found} == {}


async def _indexes(conn: asyncpg.Connection, schema: str) -> dict[str, tuple[str, bool]]:
    rows = await conn.fetch("""
        SELECT c.relname, pg_get_indexdef(i.indexrelid) AS definition, i.indisvalid
        FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
        WHERE i.indrelid = to_regclass($1)""", f"{sql.quote_ident(schema)}.jobs")
    shown = await conn.fetchval("SELECT quote_ident($1)", schema) + "."  # as pg_get_indexdef writes it
    return {r["relname"]: (r["definition"].replace(shown, "{schema}."), r["indisvalid"]) for r in rows}


async def _migrate_up_to(conn: asyncpg.Connection, schema: str, last: int) -> None:
    """The database as a release that shipped migrations up to ``last`` left it."""
    statements = sql.render(schema)
    async with conn.transaction():
        await conn.execute(statements.MIGRATION_TABLE_CREATE)
        for migration in available_migrations():
            if migration.version <= last:
                await conn.execute(sql.render_migration(migration.transactional, schema))
                await conn.execute(statements.MIGRATION_RECORD, migration.version, migration.name)


async def test_an_upgrade_from_006_builds_its_jobs_indexes_concurrently_while_jobs_are_written(
        pg_url: str, schema: str) -> None:
    old = f"{schema}_old"
    quoted = sql.quote_ident(old)
    name = f"migrate-{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    snapshot = await asyncpg.connect(pg_url)
    migrator = await asyncpg.connect(pg_url, server_settings={"application_name": name})
    try:
        await migrate(admin, schema)  # a fresh install, for the indexes it has
        await _migrate_up_to(admin, old, 6)
        await admin.execute(f"INSERT INTO {quoted}.jobs (kind) SELECT 'old' FROM generate_series(1, 1000)")
        # An old snapshot elsewhere in the database: a concurrent build waits for it, a plain
        # one would not; while it waits, the upgrade's transaction must be committed already.
        await snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await snapshot.fetchval("SELECT 1")
        async with anyio.create_task_group() as group:
            group.start_soon(migrate, migrator, old)
            await wait_until(lambda: admin.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE application_name = $1", name),
                what="a concurrent index build waiting outside the migration transaction")
            indexes = await _indexes(admin, old)
            assert indexes.get("jobs_stopping_idx", ("", False))[1] is False, "built inside the transaction"
            with anyio.fail_after(3):  # inserts and acks go on meanwhile, with 007's column there
                job_id = await admin.fetchval(f"INSERT INTO {quoted}.jobs (kind) VALUES ('new') RETURNING id")
                await admin.execute(f"UPDATE {quoted}.jobs SET state = 'cancelled', stopping_since = now() "
                                    "WHERE id = $1", job_id)
            await snapshot.execute("COMMIT")
        assert await _indexes(admin, old) == await _indexes(admin, schema)  # the same indexes, all valid
        assert all(valid for _, valid in (await _indexes(admin, old)).values())
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        for conn in (admin, snapshot, migrator):
            await conn.close()
