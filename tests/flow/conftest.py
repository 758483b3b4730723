"""Real peers and helpers for the flow-control tests: an aiosmtpd server and an aiohttp
webhook receiver on the test's loop, a registry of chain/condition kinds, and engine
subprocesses (``python -m engine.cli start``) sharing the test's database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope

from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.registry import Registry
from tests.flow import workers
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


# --- an SMTP server and a webhook receiver -------------------------------------------------


@dataclass
class SmtpPeer:
    port: int = 0
    messages: list[Envelope] = field(default_factory=list)


class _Store:
    def __init__(self, messages: list[Envelope]) -> None:
        self.messages = messages

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest_asyncio.fixture
async def smtp_peer() -> AsyncIterator[SmtpPeer]:
    """A plain aiosmtpd server on the test's loop, keeping every message."""
    peer = SmtpPeer()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(_Store(peer.messages), hostname="mx.test"), "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    yield peer
    server.close()
    await server.wait_closed()


@dataclass
class Webhook:
    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200  # what the receiver answers (500: an outage)
    hold: asyncio.Event | None = None  # set: requests hang until it is set (a stuck receiver)
    held: int = 0


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[Webhook]:
    """An aiohttp receiver keeping every JSON body POSTed to /hook."""
    hook = Webhook()

    async def receive(request: web.Request) -> web.Response:
        if hook.hold is not None and not hook.hold.is_set():
            hook.held += 1
            await hook.hold.wait()
        if hook.status != 200:
            return web.Response(status=hook.status, text="receiver down")
        hook.posts.append({"body": await request.json(), "headers": dict(request.headers)})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}/hook"
    yield hook
    if hook.hold is not None:
        hook.hold.set()
    await runner.cleanup()


# --- kinds for chains and conditions ----------------------------------------------------------


def flow_registry(recorder: Recorder) -> Registry:
    """``scripted`` (see tests.support.scripted) plus the kinds the flow tests chain."""
    registry = workers.register(scripted_registry(recorder, max_attempts=1))

    @registry.handler("step", max_attempts=1)
    async def step(job: Job) -> dict[str, Any]:
        recorder.start(job)
        recorder.stop(job)
        if job.args.get("fail"):
            raise PermanentError("step asked to fail")
        return {"n": job.args["n"] + 1, "seen": job.args}

    @registry.handler("backup-database", max_attempts=1)
    async def backup(job: Job) -> dict[str, Any]:
        recorder.start(job)
        recorder.stop(job)
        return {"backupFile": f"/backup/{job.args.get('db', 'main')}.sql", "sizeMb": 12}

    @registry.handler("notify-backup-complete", max_attempts=1)
    async def notify(job: Job) -> dict[str, Any]:
        recorder.start(job)
        recorder.stop(job)
        return {"told": job.args}

    @registry.handler("maintenance-task", max_attempts=1)
    async def maintenance(job: Job) -> str:
        recorder.start(job)
        recorder.stop(job)
        return "maintained"

    return registry


# --- engine subprocesses -------------------------------------------------------------------------


@dataclass
class EngineProcesses:
    """Engine subprocesses started from one config file; ``nodes`` are their node names."""

    procs: list[asyncio.subprocess.Process]
    nodes: list[str]
    logs: list[Path]

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in self.logs)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(type(value))


def write_config(path: Path, settings: dict[str, Any], queues: dict[str, dict[str, Any]]) -> Path:
    lines = [f"{key} = {_toml(value)}" for key, value in settings.items()]
    lines += ["[dashboard]", "enabled = false", "[logging]", 'format = "json"', 'level = "warning"']
    for name, options in queues.items():
        lines.append(f"[queues.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def engine_processes(pg_url: str, schema: str, tmp_path: Path) -> Callable[..., Any]:
    """``async with engine_processes(count, queues={...}) as procs``: ``count`` real
    ``jobengine start`` processes on this test's schema, each with its own node name,
    running ``tests.flow.workers``; stopped with SIGTERM (drained) afterwards."""

    @contextlib.asynccontextmanager
    async def start(count: int, *, queues: dict[str, dict[str, Any]]) -> AsyncIterator[EngineProcesses]:
        config = write_config(tmp_path / "jobengine.toml", {
            "database_url": pg_url, "schema": schema, "poll_interval": 0.5, "shutdown_grace": 5,
            "modules": ["tests.flow.workers"]}, queues)
        nodes = [f"flow-node-{index}" for index in range(count)]
        logs = [tmp_path / f"{node}.log" for node in nodes]
        procs = []
        for node, log in zip(nodes, logs, strict=True):
            env = {**os.environ, "JOBENGINE_NODE_NAME": node, "PYTHONPATH": str(REPO)}
            with log.open("wb") as out:
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "engine.cli", "start", "--config", str(config),
                    cwd=REPO, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT))
        running = EngineProcesses(procs, nodes, logs)
        try:
            await _wait_for_nodes(pg_url, schema, nodes, running)
            yield running
        finally:
            await _stop(procs)

    return start


async def _wait_for_nodes(pg_url: str, schema: str, nodes: list[str], running: EngineProcesses) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        async def registered() -> bool:
            if any(proc.returncode is not None for proc in running.procs):
                raise AssertionError("an engine process exited:\n" + running.output())
            try:
                rows = await conn.fetch(f'SELECT name FROM "{schema}".nodes')
            except asyncpg.UndefinedTableError:
                return False
            return {r["name"] for r in rows} >= set(nodes)

        await wait_until(registered, timeout=30)
    finally:
        await conn.close()


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
