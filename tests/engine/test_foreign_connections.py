"""Transactional enqueue on the application's own async connection, against real Postgres:
asyncpg, psycopg 3 and SQLAlchemy (AsyncConnection, AsyncSession on asyncpg and on psycopg).
A committed transaction enqueues; a rolled-back one never does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from engine.core.job import Job
from engine.core.registry import Registry
from engine.db.foreign import adapt, to_format_style

Transaction = Callable[[str], Any]  # url -> async context manager yielding the app's connection


def noop_registry() -> Registry:
    registry = Registry()

    @registry.handler("noop")
    async def noop(job: Job) -> None:
        return None

    return registry


@asynccontextmanager
async def asyncpg_transaction(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def psycopg_transaction(url: str) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        yield conn


def sqlalchemy_url(url: str, driver: str) -> str:
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


@asynccontextmanager
async def sqlalchemy_connection(url: str, driver: str = "asyncpg") -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(url, driver))
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlalchemy_session(url: str, driver: str = "asyncpg") -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(url, driver))
    try:
        async with AsyncSession(engine) as session, session.begin():
            yield session
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlalchemy_psycopg_session(url: str) -> AsyncIterator[Any]:
    async with sqlalchemy_session(url, "psycopg") as session:
        yield session


@asynccontextmanager
async def sqlalchemy_psycopg_connection(url: str) -> AsyncIterator[Any]:
    async with sqlalchemy_connection(url, "psycopg") as conn:
        yield conn


KINDS = {
    "asyncpg": asyncpg_transaction,
    "psycopg-async": psycopg_transaction,
    "sqlalchemy-asyncconnection-asyncpg": sqlalchemy_connection,
    "sqlalchemy-asyncsession-asyncpg": sqlalchemy_session,
    "sqlalchemy-asyncconnection-psycopg": sqlalchemy_psycopg_connection,
    "sqlalchemy-asyncsession-psycopg": sqlalchemy_psycopg_session,
}


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_committed_transaction_enqueues_and_a_rolled_back_one_does_not(start_engine, pg_url, kind) -> None:
    engine = await start_engine(noop_registry())
    transaction = KINDS[kind]

    async with transaction(pg_url) as conn:
        committed = await engine.enqueue("noop", {"order": 1}, conn=conn, tags=["shop"], delay=60)
        assert await engine.get(committed.id) is None  # not visible before the commit
    stored = await engine.get(committed.id)
    assert stored is not None and stored.args == {"order": 1} and stored.tags == ["shop"]
    assert stored.state == "scheduled" and committed.state == "scheduled"

    with pytest.raises(Rollback):
        async with transaction(pg_url) as conn:
            rolled_back = await engine.enqueue("noop", {"order": 2}, conn=conn)
            raise Rollback
    assert await engine.get(rolled_back.id) is None
    assert [job.id for job in await engine.list_jobs()] == [committed.id]


@pytest.mark.parametrize("kind", ["psycopg-async", "sqlalchemy-asyncsession-asyncpg",
                                  "sqlalchemy-asyncsession-psycopg"])
async def test_unique_jobs_and_dependencies_work_on_a_foreign_connection(start_engine, pg_url, kind) -> None:
    engine = await start_engine(noop_registry())
    first = await engine.enqueue("noop", {"key": "a"}, unique={"keys": ["key"]})
    async with KINDS[kind](pg_url) as conn:
        again = await engine.enqueue("noop", {"key": "a"}, unique={"keys": ["key"]}, conn=conn)
        waiting = await engine.enqueue("noop", {"after": first.id}, depends_on=[first.id], conn=conn)
    assert again.id == first.id
    stored = await engine.get(waiting.id)
    assert waiting.state == stored.state == "scheduled" and stored.meta["depends_on"] == [first.id]


async def test_an_unknown_dependency_on_a_foreign_connection_names_it_and_inserts_nothing(start_engine, pg_url) -> None:
    engine = await start_engine(noop_registry())
    async with psycopg_transaction(pg_url) as conn:
        with pytest.raises(Exception, match="dependsOn: no job with id 999999"):
            await engine.enqueue("noop", {}, depends_on=[999_999], conn=conn)
        kept = await engine.enqueue("noop", {"still": "usable"}, conn=conn)  # the savepoint rolled back alone
    assert [job.id for job in await engine.list_jobs()] == [kept.id]


async def test_a_sync_connection_or_a_stranger_is_refused_with_a_clear_error(start_engine, pg_url) -> None:
    engine = await start_engine(noop_registry())
    with psycopg.Connection.connect(pg_url) as sync_conn, pytest.raises(TypeError, match="would block the event loop"):
        await engine.enqueue("noop", {}, conn=sync_conn)
    with pytest.raises(TypeError, match=r"expected an asyncpg, psycopg 3 or SQLAlchemy connection.*builtins\.dict"):
        await engine.enqueue("noop", {}, conn={})
    assert adapt(None) is None


def test_dollar_placeholders_become_format_ones_in_order_with_percent_escaped() -> None:
    assert to_format_style("SELECT $2, '5%', $1, $2", ["a", "b"]) == ("SELECT %s, '5%%', %s, %s", ["b", "a", "b"])


async def test_a_locked_row_on_a_foreign_connection_raises_asyncpgs_lock_error(pg_url, schema) -> None:
    """The dependency insert retries on asyncpg.LockNotAvailableError: other drivers' errors
    for the same SQLSTATE (55P03) become it."""
    holder = await asyncpg.connect(pg_url)
    try:
        await holder.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".t (id int PRIMARY KEY); '
                             f'INSERT INTO "{schema}".t VALUES (1)')
        async with holder.transaction():
            await holder.execute(f'SELECT * FROM "{schema}".t FOR UPDATE')
            for kind in ("psycopg-async", "sqlalchemy-asyncsession-asyncpg", "sqlalchemy-asyncsession-psycopg"):
                async with KINDS[kind](pg_url) as conn:
                    adapted = adapt(conn)
                    with pytest.raises(asyncpg.LockNotAvailableError):
                        async with adapted.transaction():
                            await adapted.fetch(f'SELECT id FROM "{schema}".t WHERE id = $1 FOR UPDATE NOWAIT', 1)
                    assert await adapted.fetchval("SELECT $1::int + 1", 41) == 42  # the savepoint rolled back
    finally:
        await holder.close()
