"""Search compiled to SQL (engine/db/dashboard_reads.py, sql.dashboard_job_page) against real
Postgres: every term finds exactly its jobs, values travel as parameters, args.PATH:VALUE
reads migration 010's GIN index, and that index is built without stalling writers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest
import pytest_asyncio

from engine.core.search import parse_query
from engine.db import sql
from engine.db.migrate import migrate
from engine.db.store import JobStore
from tests.support.plans import explain, scans
from tests.support.waiting import wait_until

# (queue, kind, args, state, tags, attempted_by, errors)
ROWS: list[tuple[str, str, str, str, list[str], str | None, str]] = [
    ("mail", "mail", '{"to": "a@example.com", "subject": "50% off"}', "completed", ["billing"], "web-1", "[]"),
    ("mail", "mail", '{"to": "b@example.com", "subject": "hello"}', "discarded", [], "web-2",
     '[{"attempt": 1, "error": "connect: timed out", "kind": "error"}]'),
    ("default", "http", '{"url": "https://x.test", "data": {"userId": 7}}', "retryable", ["billing"], "web-1",
     '[{"attempt": 1, "error": "HTTP 503", "kind": "error"}]'),
    ("default", "http", '{"url": "https://y.test", "data": {"userId": "7"}}', "available", [], None, "[]"),
    ("default", "ssh", '{"host": "o\'brien; DROP TABLE jobs", "user_name": "x"}', "executing", [], "web-2", "[]"),
]


@pytest_asyncio.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[JobStore]:
    jobs = JobStore(pg_url, schema=schema)
    await jobs.open()
    await jobs.migrate()
    async with jobs.pool.acquire() as conn:
        for queue, kind, args, state, tags, node, errors in ROWS:
            await conn.execute(
                f"INSERT INTO {sql.quote_ident(schema)}.jobs (queue, kind, args, state, tags, attempted_by, errors, "
                "attempt) VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7::text::jsonb, 1)",
                queue, kind, args, state, tags, node, errors)
    yield jobs
    await jobs.close()


async def _kinds(store: JobStore, text: str) -> list[tuple[str, str]]:
    jobs = await store.dashboard_job_page(query=parse_query(text), limit=50)
    return [(job.kind, job.state) for job in jobs][::-1]


@pytest.mark.parametrize(("text", "found"), [
    ("kind:mail", [("mail", "completed"), ("mail", "discarded")]),
    ("queue:default state:executing,available", [("http", "available"), ("ssh", "executing")]),
    ("state:discarded,retryable", [("mail", "discarded"), ("http", "retryable")]),
    ("tag:billing", [("mail", "completed"), ("http", "retryable")]),
    ("tag:billing kind:http", [("http", "retryable")]),
    ("node:web-2", [("mail", "discarded"), ("ssh", "executing")]),
    ("args.to:a@example.com", [("mail", "completed")]),
    ("args.data.userId:7", [("http", "retryable"), ("http", "available")]),
    ('args.data.userId:"7"', [("http", "available")]),
    ('error:"timed out"', [("mail", "discarded")]),
    ("error:503 kind:http", [("http", "retryable")]),
    ("50%", [("mail", "completed")]),
    ("user_name", [("ssh", "executing")]),
    ("5_%", []),
    ('args.host:"o\'brien; DROP TABLE jobs"', [("ssh", "executing")]),
    ("args.to:nobody@example.com", []),
])
async def test_each_term_finds_exactly_its_jobs(store: JobStore, text: str, found: list[tuple[str, str]]) -> None:
    assert await _kinds(store, text) == found


async def test_an_id_term_finds_that_job_and_the_form_filters_add_to_the_query(store: JobStore) -> None:
    newest = (await store.dashboard_job_page(limit=1))[0]
    assert [job.id for job in await store.dashboard_job_page(query=parse_query(f"id:{newest.id}"))] == [newest.id]
    both = await store.dashboard_job_page(query=parse_query("tag:billing"), kind="mail")
    assert [job.kind for job in both] == ["mail"]


async def test_definition_finds_the_jobs_a_definition_made(store: JobStore) -> None:
    assert await _kinds(store, "definition:nightly") == []
    async with store.pool.acquire() as conn:
        schema = sql.quote_ident(store.schema)
        await conn.execute(f"""UPDATE {schema}.jobs SET meta = '{{"definition": "nightly"}}' WHERE kind = 'ssh'""")
    assert await _kinds(store, "definition:nightly") == [("ssh", "executing")]


async def test_an_args_search_reads_the_gin_index(store: JobStore) -> None:
    schema = sql.quote_ident(store.schema)
    async with store.pool.acquire() as conn:
        await conn.execute(f"INSERT INTO {schema}.jobs (kind, args, state) SELECT 'bulk', "
                           "jsonb_build_object('to', 'user' || i || '@example.com'), 'completed' "
                           "FROM generate_series(1, 30000) AS i")
        await conn.execute(f"ANALYZE {schema}.jobs")
        for pairs, params in ((0, ()), (1, ("default", "completed"))):
            text = sql.dashboard_job_page(store.schema, ["args"], pairs=pairs, ascending=False)
            plan = await explain(conn, text, *params, {"to": "user77@example.com"}, 51, mode="force_custom_plan")
            assert ("Bitmap Index Scan", "jobs_args_idx") in scans(plan), scans(plan)


async def _args_index_valid(conn: asyncpg.Connection, schema: str) -> Any:
    return await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                               f"{sql.quote_ident(schema)}.jobs_args_idx")


async def test_an_invalid_args_index_left_by_a_crash_is_built_again(store: JobStore) -> None:
    async with store.pool.acquire() as conn:
        assert await _args_index_valid(conn, store.schema) is True
        # What a concurrent build killed half-way leaves behind.
        await conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)",
                           f"{sql.quote_ident(store.schema)}.jobs_args_idx")
        assert await _args_index_valid(conn, store.schema) is False
        assert await store.migrate() == []
        assert await _args_index_valid(conn, store.schema) is True


async def test_building_the_args_index_does_not_hold_back_inserts(store: JobStore, pg_url: str) -> None:
    schema = sql.quote_ident(store.schema)
    insert = f"INSERT INTO {schema}.jobs (kind) VALUES ('during-build') RETURNING id"
    open_writer, migrator = await asyncpg.connect(pg_url), None
    try:
        await open_writer.execute(f"DROP INDEX {schema}.jobs_args_idx")
        await open_writer.execute("BEGIN")
        await open_writer.fetchval(insert)  # a transaction open on jobs: the build must wait for it
        build_name = f"migrate-{uuid.uuid4().hex[:8]}"
        migrator = await asyncpg.connect(pg_url, server_settings={"application_name": build_name})
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _migrate_on(migrator, store.schema))
            await wait_until(lambda: open_writer.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE application_name = $1", build_name),
                what="the index build waiting for the open transaction")
            with anyio.fail_after(3):  # a plain CREATE INDEX would queue this insert behind it
                async with store.pool.acquire() as conn:
                    assert await conn.fetchval(insert)
            await open_writer.execute("COMMIT")
        assert await _args_index_valid(open_writer, store.schema) is True
    finally:
        await open_writer.close()
        if migrator is not None:
            await migrator.close()


async def _migrate_on(conn: asyncpg.Connection, schema: str) -> None:
    await migrate(conn, schema)
