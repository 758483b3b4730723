"""A recursion-deep traceback (5,000 frames) is cut before it is formatted, so neither a
failing dashboard request nor a failing handler blocks the event loop while it is logged
or stored; what is kept names the innermost frames, and secrets stay redacted."""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from engine.core.job import Job
from engine.core.logs import redact_processor
from engine.core.registry import Registry
from engine.core.tracebacks import format_traceback
from engine.testing import wait_for_job
from engine.web.app import create_app
from tests.support.waiting import wait_until

DEPTH = 5_000
TOKEN = "t" * 32
SECRET = "hunter2-deep-traceback-secret"
# The watchdog counts a stall once the loop runs nothing for this long.
STALL = 0.5


def _down(n: int, message: str) -> None:
    """Two alternating functions, so no line repeats and Python cannot fold the frames."""
    if n == 0:
        raise RuntimeError(message)
    _up(n - 1, message)


def _up(n: int, message: str) -> None:
    if n == 0:
        raise RuntimeError(message)
    _down(n - 1, message)


@pytest.fixture
def deep_recursion() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(DEPTH + 1_000)
    yield
    sys.setrecursionlimit(limit)


def _registry() -> Registry:
    registry = Registry()

    @registry.handler("deep", max_attempts=1)
    async def deep(job: Job) -> Any:
        _down(DEPTH, "deep failure")

    return registry


async def _start(start_engine: Any) -> Any:
    return await start_engine(_registry(), queues={"default": {"concurrency": 1}}, secrets=["DEEP_SECRET"],
                              lifeline={"stall_warning": STALL}, dashboard={"token": TOKEN})


async def test_a_request_failing_with_a_deep_traceback_is_logged_without_stalling_the_loop(
        start_engine, deep_recursion: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEP_SECRET", SECRET)
    engine = await _start(start_engine)
    await wait_until(lambda: engine.healthy, timeout=10)  # the listener connected: /healthz is 200
    app = create_app(engine)

    async def boom(request: web.Request) -> web.Response:
        try:
            _down(DEPTH, "the first failure")
        except RuntimeError:  # a second deep one while handling it: a chain of 2 x 5,000 frames
            _down(DEPTH, f"request failed with {SECRET}")
        raise AssertionError("unreachable")

    app.router.add_get("/api/boom", boom)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    logged: list[dict[str, Any]] = []

    def capture(logger: Any, method: str, event: Any) -> Any:
        if event["event"] == "dashboard request failed":
            logged.append(dict(event))
        raise structlog.DropEvent

    # The processors `jobengine start` configures (engine.core.logs), the renderer aside.
    saved = structlog.get_config()
    structlog.configure(processors=[structlog.processors.format_exc_info, redact_processor, capture])
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for _ in range(3):
                async with http.get(f"http://{host}:{port}/api/boom") as response:
                    assert response.status == 500
                async with http.get(f"http://{host}:{port}/healthz") as response:
                    assert response.status == 200
    finally:
        await runner.cleanup()
        structlog.configure(**saved)
    assert engine.supervisor.loop_stalls == 0, engine.supervisor.longest_stall_seconds
    assert len(logged) == 3
    text = logged[0]["exception"]
    assert text.count("frames omitted") == 2 and "RuntimeError: the first failure" in text
    assert "During handling of the above exception" in text and "RuntimeError: request failed with" in text
    assert SECRET not in text and len(text) < 20_000


async def test_a_handler_failing_with_a_deep_traceback_is_stored_without_stalling_the_loop(
        start_engine, deep_recursion: None) -> None:
    engine = await _start(start_engine)
    jobs = [await engine.enqueue("deep", {}) for _ in range(3)]
    for job in jobs:
        done = await wait_for_job(engine, job.id, timeout=20)
        assert done.state == "discarded"
    assert engine.supervisor.loop_stalls == 0, engine.supervisor.longest_stall_seconds
    trace = done.errors[-1]["traceback"]
    assert "frames omitted" in trace and trace.rstrip().endswith("RuntimeError: deep failure")
    assert "in _down" in trace and "in _up" in trace  # the innermost frames are kept


def test_a_shallow_traceback_reads_as_the_standard_librarys_and_a_huge_message_is_cut() -> None:
    try:
        try:
            _down(3, "inner")
        except RuntimeError as exc:
            raise KeyError("x" * 50_000) from exc
    except KeyError as exc:
        ours, theirs = format_traceback(exc), "".join(traceback.format_exception(exc))
    theirs = re.sub(r"^\s*[~^]+\n", "", theirs, flags=re.MULTILINE)  # the standard library's position marks
    frames = theirs[:theirs.index("KeyError: ")]
    assert ours.startswith(frames) and "The above exception was the direct cause" in frames
    assert ours[len(frames):].startswith("KeyError: 'xxx") and "more characters cut" in ours and len(ours) < 5_000
