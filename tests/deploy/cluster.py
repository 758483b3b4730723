"""Run several ``jobengine start`` processes on one database, as containers would.

Plain Python (no pytest), shared by ``tests/deploy/test_scale_out.py`` and
``bench/scale_out.py``.

Example::

    cluster = Cluster(workdir, database_url=url, schema="s1", settings={"queues": {"default": {}}})
    cluster.start(4)
    await cluster.wait_ready()
    ...
    codes = cluster.terminate()      # SIGTERM: each drains and exits 0
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from engine.db.sql import quote_ident

REPO = Path(__file__).resolve().parents[2]
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(settings: Mapping[str, Any]) -> str:
    """Settings as a config file: scalars first, then ``[tables]``, ``[[cron]]`` last.

    Example: ``to_toml({"queues": {"default": {"concurrency": 5}}})`` ->
    ``[queues.default]\\nconcurrency = 5\\n``.
    """
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in settings.items()
             if not isinstance(v, Mapping) and k != "cron"]
    for key, value in settings.items():
        if key == "queues":
            for name, queue in value.items():
                lines += [f"[queues.{_toml_key(name)}]", *(f"{k} = {_toml_value(v)}" for k, v in queue.items())]
        elif isinstance(value, Mapping):
            lines += [f"[{_toml_key(key)}]", *(f"{k} = {_toml_value(v)}" for k, v in value.items())]
    for entry in settings.get("cron", []):
        lines += ["[[cron]]", *(f"{k} = {_toml_value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def jobengine_command() -> list[str]:
    """The ``jobengine`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "jobengine"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from engine.cli import main; main()"]


class Cluster:
    """Engine processes sharing one config file and one database schema."""

    def __init__(self, workdir: Path, *, database_url: str, schema: str, settings: Mapping[str, Any]) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.schema = schema
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "jobengine.toml"
        self.config_path.write_text(to_toml({"schema": schema, **settings}), encoding="utf-8")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        self.env["JOBENGINE_DATABASE_URL"] = database_url

    def start(self, count: int) -> None:
        """Start ``count`` more processes; their output goes to ``worker-N.log``."""
        for _ in range(count):
            index = len(self.processes)
            with open(self.workdir / f"worker-{index}.log", "wb") as log:
                self.processes.append(subprocess.Popen(
                    [*jobengine_command(), "start", "--config", str(self.config_path)],
                    cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def kill(self, index: int) -> int:
        """SIGKILL one process (no cleanup at all, like a lost container); returns its pid."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        return process.pid

    def terminate(self, timeout: float = 30.0) -> dict[int, int | None]:
        """SIGTERM every live process; return pid -> exit code (None: did not exit in time)."""
        live = [p for p in self.processes if p.poll() is None]
        for process in live:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[int, int | None] = {}
        for process in live:
            try:
                codes[process.pid] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[process.pid] = None
        return codes

    def logs(self, tail: int = 40) -> str:
        """The last lines of every process's output, for failure messages."""
        parts = []
        for index, process in enumerate(self.processes):
            lines = (self.workdir / f"worker-{index}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- worker {index} (pid {process.pid}, exit {process.poll()}) ---")
            parts.extend(lines[-tail:])
        return "\n".join(parts)

    def check_alive(self, *, except_pids: frozenset[int] = frozenset()) -> None:
        """Raise if a process exited that should not have."""
        dead = [p for p in self.processes if p.pid not in except_pids and p.poll() is not None]
        if dead:
            raise RuntimeError(f"engine process(es) {[p.pid for p in dead]} exited early\n{self.logs()}")

    async def live_nodes(self, conn: asyncpg.Connection) -> set[int]:
        """Pids of nodes registered (heartbeating) in the database."""
        try:
            names = await conn.fetch(f"SELECT name FROM {quote_ident(self.schema)}.nodes")
        except asyncpg.UndefinedTableError:
            return set()
        return {node_pid(record["name"]) for record in names}

    async def wait_ready(self, conn: asyncpg.Connection, timeout: float = 30.0) -> None:
        """Wait until every started process has registered its node."""
        async def ready() -> bool:
            self.check_alive()
            return set(self.pids) <= await self.live_nodes(conn)

        await wait_until(ready, timeout, what="engine processes to register")


def node_pid(name: str) -> int:
    """The pid in a default node name ``host.pid.suffix``."""
    return int(name.rsplit(".", 2)[1])


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, *, what: str,
                     interval: float = 0.1) -> None:
    """Poll ``condition`` until true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            # Polls another process's state in the database: there is no event to wait on.
            while not await condition():  # noqa: ASYNC110
                await anyio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None
