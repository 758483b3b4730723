"""Engines behind a real PgBouncer (Debian's package), in session and in transaction pooling:
claims, acks, cancel, rescue and shutdown keep their promises, and ``listen_url`` takes
LISTEN straight to Postgres when the pooler cannot carry it (docs/deployment.md)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import pytest_asyncio

from engine.engine import Engine
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
FAST = {"poll_interval": 0.5, "lifeline": {"heartbeat_interval": 0.5, "rescue_after": 5}}



def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """A PgBouncer of the test's own in front of ``upstream`` (a Postgres URL)."""

    def __init__(self, upstream: str, mode: str) -> None:
        parts = urlsplit(upstream)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        host = socket_dir or parts.hostname or "127.0.0.1"
        self.user = parts.username or "postgres"
        self.dbname = parts.path.lstrip("/") or "postgres"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobengine-pgbouncer-"))
        # PgBouncer refuses to run as root: run it as the owner of the server's socket
        # directory (the embedded server's user), or as nobody for a TCP server.
        self.run_as = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name if socket_dir else "nobody"
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={parts.port or 5432} user={self.user}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {mode}\nmax_client_conn = 500\ndefault_pool_size = 40\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n")
        self.dir.chmod(0o777)
        for child in self.dir.iterdir():
            child.chmod(0o644)
        self.process = subprocess.Popen([PGBOUNCER, *(["-u", self.run_as] if os.getuid() == 0 else []),
                                         str(self.dir / "pgbouncer.ini")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2, statement_cache_size=0)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(params=["session", "transaction"])
def pool_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _started(pg_url: str, mode: str) -> PgBouncer:
    server = PgBouncer(pg_url, mode)
    try:
        await wait_until(lambda: _answers(server.url), timeout=15, what=f"PgBouncer ({mode}) to answer")
    except BaseException:
        print(server.log())
        server.close()
        raise
    return server


def _starter(bouncer: PgBouncer, mode: str, start_engine: Callable[..., Any]) -> Callable[..., Any]:
    """Start an engine whose every connection goes through ``bouncer``, with the settings a
    user would write for that pooling mode."""

    async def start(registry: Any, **settings: Any) -> Engine:
        if mode == "transaction":
            settings.setdefault("statement_cache_size", 0)  # PgBouncer 1.18 cannot carry prepared statements
        return await start_engine(registry, database_url=bouncer.url, **(FAST | settings))  # type: ignore[no-any-return]

    return start


@pytest_asyncio.fixture
async def bouncer(pg_url: str, pool_mode: str) -> AsyncIterator[PgBouncer]:
    server = await _started(pg_url, pool_mode)
    yield server
    server.close()


@pytest.fixture
def through(bouncer: PgBouncer, pool_mode: str, start_engine: Callable[..., Any]) -> Callable[..., Any]:
    return _starter(bouncer, pool_mode, start_engine)


@pytest_asyncio.fixture
async def transaction_bouncer(pg_url: str) -> AsyncIterator[PgBouncer]:
    server = await _started(pg_url, "transaction")
    yield server
    server.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield Recorder()


async def test_every_job_runs_exactly_once_through_pgbouncer(through: Callable[..., Any], recorder: Recorder) -> None:
    queues = {"default": {"concurrency": 10}}
    first = await through(scripted_registry(recorder), queues=queues)
    await through(scripted_registry(recorder), queues=queues)
    jobs = await first.enqueue_many([{"jobType": "scripted", "data": {"n": i}} for i in range(200)])
    for job in jobs:
        done = await wait_for_job(first, job.id, timeout=60)
        assert done.state == "completed", (done.state, done.errors)
    assert sorted(recorder.runs.values()) == [1] * 200


async def test_cancel_of_an_executing_job_stops_its_handler(
        through: Callable[..., Any], recorder: Recorder, pg_url: str, pool_mode: str) -> None:
    # LISTEN carries the cancel to the handler's node: straight to Postgres in transaction mode.
    listen = {"listen_url": pg_url} if pool_mode == "transaction" else {}
    engine = await through(scripted_registry(recorder), queues={"default": {"concurrency": 2}}, **listen)
    job = await engine.enqueue("scripted", {"sleep": 60})
    await wait_until(lambda: job.id in recorder.started, what="the long job to start")
    assert await engine.cancel(job.id)
    await wait_until(lambda: job.id in recorder.cancelled, timeout=10, what="the handler to be cancelled")
    assert (await engine.get(job.id)).state == "cancelled"


async def test_a_dead_nodes_job_is_rescued_through_pgbouncer(through: Callable[..., Any], recorder: Recorder) -> None:
    client = await through(scripted_registry(recorder))  # insert-only: plays the node that dies
    job = await client.enqueue("scripted", {"result": "ok"})
    assert client.store is not None
    await client.store.heartbeat("dead-node", ["default"], {})
    (claimed,) = await client.store.fetch("default", 1, "dead-node")  # claimed, then never heard of again
    assert claimed.id == job.id
    await through(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    done = await wait_for_job(client, job.id, timeout=30)
    assert (done.state, done.attempt, recorder.runs[job.id]) == ("completed", 2, 1)


async def test_shutdown_through_pgbouncer_returns_running_jobs(
        through: Callable[..., Any], recorder: Recorder) -> None:
    client = await through(scripted_registry(recorder))
    engine = await through(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    job = await client.enqueue("scripted", {"sleep": 60})
    await wait_until(lambda: job.id in recorder.started, what="the long job to start")
    await engine.stop(grace=0)
    returned = await client.get(job.id)
    assert returned is not None
    assert (returned.state, returned.attempt) == ("available", 0)


async def test_listen_url_brings_pushed_wakeups_back_under_transaction_pooling(
        transaction_bouncer: PgBouncer, start_engine: Callable[..., Any], recorder: Recorder, pg_url: str) -> None:
    through = _starter(transaction_bouncer, "transaction", start_engine)
    # Polling every 30 s: a job that starts within 5 s was woken by a notification.
    engine = await through(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                           listen_url=pg_url, poll_interval=30)
    assert engine.notifier is not None
    await wait_until(lambda: engine.notifier is not None and engine.notifier.state == "connected",
                     what="the listener to connect straight to Postgres")
    job = await engine.enqueue("scripted", {"result": "ok"})
    done = await wait_for_job(engine, job.id, timeout=5)
    assert done.state == "completed"
