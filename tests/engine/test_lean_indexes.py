"""Migration 005: the operator indexes (queue/state, kind, tags) leave executing jobs out, so
a claim writes none of them; the dashboard still finds every job, executing ones included,
and every one of its reads stays on an index with a big table (performance issue 9)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from engine.db import sql
from engine.db.store import JobStore
from tests.support.plans import explain, scans

LISTING = ("jobs_queue_listing_idx", "jobs_kind_listing_idx", "jobs_tagged_listing_idx")

# 200,000 jobs, mostly completed; 'solo' has only running jobs; 'rare' kind and 'audit' tag
# are a handful of rows (some executing), 'vip' tags 1 % of the jobs.
FILL = """
INSERT INTO {schema}.jobs (queue, kind, args, state, attempt, attempted_at, completed_at, discarded_at,
                           cancelled_at, attempted_by, tags, scheduled_at)
SELECT CASE WHEN i % 10 = 0 THEN 'mail' ELSE 'default' END,
       CASE WHEN i % 20000 = 7 OR i > 199995 THEN 'rare' ELSE 'bulk' || (i % 10) END,
       jsonb_build_object('n', i), s.state, 1, now(),
       CASE WHEN s.state = 'completed' THEN now() END, CASE WHEN s.state = 'discarded' THEN now() END,
       CASE WHEN s.state = 'cancelled' THEN now() END, CASE WHEN s.state = 'executing' THEN 'node-1' END,
       CASE WHEN i % 20000 = 11 OR i > 199995 THEN ARRAY['audit'] WHEN i % 100 = 0 THEN ARRAY['vip']
            ELSE '{{}}' END,
       CASE WHEN s.state IN ('scheduled', 'retryable') THEN now() + interval '1 hour' ELSE now() END
FROM generate_series(1, 200000) AS i
CROSS JOIN LATERAL (SELECT CASE WHEN i > 199900 THEN 'executing' WHEN i > 199400 THEN 'available'
                                WHEN i % 1000 = 1 THEN 'scheduled' WHEN i % 1000 = 2 THEN 'retryable'
                                WHEN i % 500 = 3 THEN 'discarded' WHEN i % 5000 = 4 THEN 'cancelled'
                                ELSE 'completed' END AS state) AS s;
INSERT INTO {schema}.jobs (queue, kind, state, attempt, attempted_at, attempted_by)
SELECT 'solo', 'solo', 'executing', 1, now(), 'node-2' FROM generate_series(1, 3)
"""


@pytest_asyncio.fixture(scope="module")
async def big(pg_url: str) -> AsyncIterator[JobStore]:
    """One big table for the whole module (filling it is most of the module's time)."""
    schema = f"t_lean_{uuid.uuid4().hex[:10]}"
    queue = JobStore(pg_url, schema=schema)
    await queue.open()
    try:
        await queue.migrate()
        async with queue.pool.acquire() as conn:
            await conn.execute(FILL.format(schema=sql.quote_ident(schema)), timeout=300)
            # What autovacuum does to this table soon after (scale factor 0.02, migration 001),
            # with a sample of the whole table: the rare kind and tag (15 rows each) are then
            # always in the statistics, so the plans asserted below do not depend on the luck
            # of a 30,000-row sample.
            await conn.execute("SET default_statistics_target = 1000")
            await conn.execute(f"VACUUM ANALYZE {sql.quote_ident(schema)}.jobs", timeout=300)
            await conn.execute("RESET default_statistics_target")
        yield queue
    finally:
        async with queue.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {sql.quote_ident(schema)} CASCADE")
        await queue.close()


async def _indexes(queue: JobStore, text: str, *args: Any, mode: str = "force_custom_plan") -> set[str | None]:
    """The indexes the plan of ``text`` reads (as a prepared statement under ``mode``);
    fails on any sequential scan of jobs."""
    async with queue.pool.acquire() as conn:
        found = scans(await explain(conn, text, *args, mode=mode))
    assert found and not [scan for scan in found if scan[0] == "Seq Scan"], found
    return {index for _, index in found}


# The page always runs with force_custom_plan (JobStore.dashboard_job_page); the others are
# cached statements that Postgres may switch to a generic plan: with the states written as
# literals, that plan can use the partial indexes too.
@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_queue_names_and_counts_read_the_partial_indexes(big: JobStore, mode: str) -> None:
    s = big.statements
    names = await _indexes(big, s.DASHBOARD_QUEUE_NAMES, mode=mode)
    assert names == {"jobs_queue_listing_idx", "jobs_executing_queue_idx"}
    counts = await _indexes(big, s.DASHBOARD_QUEUE_COUNTS, ["default", "mail", "solo"], 10_000, mode=mode)
    assert {"jobs_queue_listing_idx", "jobs_executing_queue_idx"} <= counts
    limited = await _indexes(big, s.JOB_FETCH_LIMITED, "default", 10, "node-1", None, None, 50, mode=mode)
    assert limited == {"jobs_fetch_idx", "jobs_executing_queue_idx", "jobs_pkey"}


def _page(schema: str, filters: list[str], pairs: int = 0, search: bool = False, scanned: tuple[str, ...] = ()) -> str:
    return sql.dashboard_job_page(schema, filters, pairs=pairs, search=search, ascending=False, scanned=scanned)


async def test_job_pages_read_indexes_with_and_without_a_state(big: JobStore) -> None:
    schema = big.schema
    every_state = [v for state in sql.DASHBOARD_STATES for v in ("mail", state)]
    reads: dict[str, tuple[tuple[Any, ...], set[str]]] = {
        "rare state": ((_page(schema, [], pairs=1), "mail", "discarded", 50), {"jobs_queue_listing_idx"}),
        "executing": ((_page(schema, [], pairs=1), "default", "executing", 50), {"jobs_executing_queue_idx"}),
        "one queue": ((_page(schema, [], pairs=7), *every_state, 50), {"jobs_queue_listing_idx"}),
        "no filter": ((_page(schema, []), 50), {"jobs_pkey", "jobs_executing_queue_idx"}),
        "rare kind": ((_page(schema, ["kind"]), "rare", 50), {"jobs_kind_listing_idx"}),
        "rare tag": ((_page(schema, [], pairs=1, scanned=("tag",)), "mail", "completed", "audit", 50),
                     {"jobs_tagged_listing_idx"}),
        # The tag lives in queue mail only: the walk of default's range must not read the table.
        "tag a queue never has": ((_page(schema, [], pairs=1, scanned=("tag",)), "default", "completed", "vip", 50),
                                  {"jobs_tagged_listing_idx"}),
        "search": ((_page(schema, [], search=True), "%zzz%", 50), {"jobs_pkey"}),
    }
    for name, ((text, *args), expected) in reads.items():
        used = await _indexes(big, text, *args)
        assert expected <= used, f"{name}: {used}"


async def test_the_dashboard_still_sees_executing_jobs(big: JobStore) -> None:
    assert await big.dashboard_queue_names() == ["default", "mail", "solo"]
    counts = await big.dashboard_counts(["default", "solo"], 10_000)
    assert counts["solo"]["executing"] == (3, True) and counts["default"]["executing"] == (90, True)
    rare = await big.dashboard_job_page(kind="rare", limit=100)
    assert [job.id for job in rare] == sorted((job.id for job in rare), reverse=True)
    assert {job.state for job in rare} == {"executing", "completed"} and len(rare) == 15
    audit = await big.dashboard_job_page(tag="audit", limit=100)
    assert {job.state for job in audit} == {"executing", "completed"} and len(audit) == 15
    assert all(job.tags == ["audit"] for job in audit)
    newest = await big.dashboard_job_page(limit=3)
    assert [job.queue for job in newest] == ["solo"] * 3
    running = await big.dashboard_job_page(queue="solo", limit=10)
    assert [job.state for job in running] == ["executing"] * 3


async def _sizes(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_index AS i "
                            "JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass",
                            f"{sql.quote_ident(schema)}.jobs")
    return {r["relname"]: r["size"] for r in rows}


async def test_a_claim_writes_no_operator_index(pg_url: str, schema: str) -> None:
    """Claiming 5,000 jobs (tagged: they are in the GIN index too) leaves the three operator
    indexes exactly as big as they were; 001's full indexes grew by a new entry per job."""
    queue = JobStore(pg_url, schema=schema)
    await queue.open()
    try:
        await queue.migrate()
        async with queue.pool.acquire() as conn:
            await conn.execute(f"""INSERT INTO {sql.quote_ident(schema)}.jobs (queue, kind, tags)
                                   SELECT 'default', 'k', ARRAY['t' || (i % 50)]
                                   FROM generate_series(1, 5000) AS i""")
            before = await _sizes(conn, schema)
            while await queue.fetch("default", 500, "node-1"):
                pass
            after = await _sizes(conn, schema)
            assert await conn.fetchval(f"SELECT count(*) FROM {sql.quote_ident(schema)}.jobs "
                                       "WHERE state = 'executing'") == 5000
    finally:
        await queue.close()
    assert {name: after[name] for name in LISTING} == {name: before[name] for name in LISTING}
    assert after["jobs_executing_queue_idx"] > before["jobs_executing_queue_idx"]  # where they went
    assert not {"jobs_queue_state_idx", "jobs_kind_idx", "jobs_tags_idx", "jobs_executing_idx"} & set(after)


async def test_upgrade_keeps_indexes_built_beforehand_and_rebuilds_invalid_ones(pg_url: str, schema: str) -> None:
    """An installation from before 005: the operator built one new index concurrently ahead of
    the upgrade, and another concurrent build failed, leaving an invalid index behind."""
    queue = JobStore(pg_url, schema=schema)
    await queue.open()
    quoted = sql.quote_ident(schema)
    try:
        await queue.migrate()
        async with queue.pool.acquire() as conn:
            await conn.execute(f"""
                DROP INDEX {quoted}.jobs_queue_listing_idx, {quoted}.jobs_kind_listing_idx,
                           {quoted}.jobs_executing_queue_idx;
                CREATE INDEX jobs_queue_state_idx ON {quoted}.jobs (queue, state, id DESC);
                CREATE INDEX jobs_kind_idx ON {quoted}.jobs (kind, id DESC);
                CREATE INDEX jobs_tags_idx ON {quoted}.jobs USING gin (tags);
                CREATE INDEX jobs_executing_idx ON {quoted}.jobs (attempted_by) WHERE state = 'executing';
                DELETE FROM {quoted}.migrations WHERE version = 5;
                INSERT INTO {quoted}.jobs (queue, kind) VALUES ('default', 'k'), ('default', 'k');""")
            await conn.execute(f"CREATE INDEX CONCURRENTLY jobs_queue_listing_idx ON {quoted}.jobs "
                               "(queue, state, id DESC) WHERE state <> 'executing'")
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY jobs_kind_listing_idx ON {quoted}.jobs (kind)")
            prebuilt = await conn.fetchval("SELECT $1::regclass::oid", f"{quoted}.jobs_queue_listing_idx")
        applied = await queue.migrate()
        async with queue.pool.acquire() as conn:
            indexes = {r["name"]: r for r in await conn.fetch(
                "SELECT c.relname AS name, c.oid, i.indisvalid AS valid, pg_get_indexdef(c.oid) AS definition "
                "FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass",
                f"{quoted}.jobs")}
    finally:
        await queue.close()
    assert [m.version for m in applied] == [5]
    assert not {"jobs_queue_state_idx", "jobs_kind_idx", "jobs_tags_idx", "jobs_executing_idx"} & set(indexes)
    assert all(indexes[name]["valid"] for name in (*LISTING, "jobs_executing_queue_idx"))
    assert indexes["jobs_queue_listing_idx"]["oid"] == prebuilt  # kept, not built again
    assert "UNIQUE" not in indexes["jobs_kind_listing_idx"]["definition"]  # the failed build was replaced
