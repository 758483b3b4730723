"""The sync Client against real Postgres: the async API's validation and errors from sync code,
thread-safe, and a transactional enqueue on the app's sync connection (psycopg 3, SQLAlchemy
Connection, Session and scoped_session): a committed transaction enqueues, a rolled-back one never."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from engine import Client, EnqueueError
from engine.core.job import Job
from engine.core.registry import Registry


class Greeting(BaseModel):
    name: str


def greeting_registry() -> Registry:
    registry = Registry()

    @registry.handler("greet", args_model=Greeting, max_attempts=4)
    async def greet(job: Job) -> str:
        return f"hello {job.args.name}"

    return registry


@pytest.fixture
def client(make_config) -> Iterator[Client]:
    with Client(config=make_config(), registry=greeting_registry()) as opened:
        yield opened


async def test_the_client_enqueues_with_the_async_apis_defaults(client: Client) -> None:
    job = client.enqueue("greet", {"name": "ada"}, delay=60, tags=["web"], priority=3)
    stored = client.get(job.id)
    assert stored is not None and stored.args == {"name": "ada"} and stored.state == "scheduled"
    assert (stored.max_attempts, stored.priority, stored.tags) == (4, 3, ["web"])
    batch = client.enqueue_many([{"jobType": "greet", "data": {"name": "bob"}}])
    document = client.enqueue_document({"jobType": "greet", "data": {"name": "cy"}, "priority": 1})
    assert {client.get(batch[0].id).args["name"], client.get(document.id).args["name"]} == {"bob", "cy"}


async def test_the_client_raises_the_async_apis_errors(client: Client, start_engine) -> None:
    engine = await start_engine(greeting_registry())
    with pytest.raises(EnqueueError) as from_sync:
        client.enqueue("greet", {"name": 5})
    with pytest.raises(EnqueueError) as from_async:
        await engine.enqueue("greet", {"name": 5})
    assert str(from_sync.value) == str(from_async.value) and "name" in str(from_sync.value)
    with pytest.raises(EnqueueError, match="no handler registered for kind 'gret'"):
        client.enqueue("gret", {})
    with pytest.raises(TypeError, match="priorty"):
        client.enqueue("greet", {"name": "x"}, priorty=1)
    assert await engine.list_jobs() == []


async def test_the_client_is_thread_safe(client: Client) -> None:
    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda n: client.enqueue("greet", {"name": f"n{n}"}), range(40)))
    assert len({job.id for job in jobs}) == 40


def test_a_client_never_processes_and_must_be_open(make_config) -> None:
    closed = Client(config=make_config(queues={"default": {"concurrency": 2}}), registry=greeting_registry())
    assert not closed.engine.processing
    with pytest.raises(RuntimeError, match="client not open"):
        closed.enqueue("greet", {"name": "x"})


@contextmanager
def psycopg_transaction(url: str) -> Iterator[Any]:
    with psycopg.Connection.connect(url) as conn, conn.transaction():
        yield conn


def _sqlalchemy(url: str) -> Any:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


@contextmanager
def sqlalchemy_connection(url: str) -> Iterator[Any]:
    engine = _sqlalchemy(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def sqlalchemy_session(url: str) -> Iterator[Any]:
    engine = _sqlalchemy(url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


@contextmanager
def sqlalchemy_scoped_session(url: str) -> Iterator[Any]:
    engine = _sqlalchemy(url)
    scoped = scoped_session(sessionmaker(engine))
    try:
        with scoped.begin():
            yield scoped
    finally:
        scoped.remove()
        engine.dispose()


SYNC_KINDS: dict[str, Callable[[str], Any]] = {
    "psycopg": psycopg_transaction,
    "sqlalchemy-connection": sqlalchemy_connection,
    "sqlalchemy-session": sqlalchemy_session,
    "sqlalchemy-scoped-session": sqlalchemy_scoped_session,
}


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.mark.parametrize("kind", list(SYNC_KINDS))
async def test_a_sync_transaction_enqueues_on_commit_and_never_on_rollback(client: Client, pg_url, kind) -> None:
    transaction = SYNC_KINDS[kind]
    with transaction(pg_url) as conn:
        committed = client.enqueue("greet", {"name": "kept"}, conn=conn)
        assert client.get(committed.id) is None  # not visible before the commit
    assert client.get(committed.id).args == {"name": "kept"}

    with pytest.raises(Rollback), transaction(pg_url) as conn:
        rolled_back = client.enqueue("greet", {"name": "gone"}, conn=conn)
        raise Rollback
    assert client.get(rolled_back.id) is None


async def test_the_client_refuses_an_async_connection(client: Client, pg_url) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        with pytest.raises(TypeError, match="belongs to its own event loop"):
            client.enqueue("greet", {"name": "x"}, conn=conn)
