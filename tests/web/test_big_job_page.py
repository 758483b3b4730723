"""A huge, deeply nested job cannot stall the engine: its page shows capped JSON, built once
and off the event loop, while the engine's heartbeats keep landing (issue 19)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest_asyncio

from engine.engine import Engine
from engine.web import serve
from tests.web.conftest import TOKEN, Controls, Dashboard, Recorder, web_registry

DEPTH = 500


def deep_args() -> dict[str, Any]:
    """About 900 KB of JSON nested 500 levels deep: every level holds 20 lines of text, so the
    indented form grows with the square of the depth."""
    node: dict[str, Any] = {"leaf": True}
    for level in range(DEPTH):
        node = {"level": level, "lines": [f"line {i} " + "x" * 78 for i in range(20)], "next": node}
    return {"tree": node}


@pytest_asyncio.fixture
async def fast_beats(make_config: Any) -> Any:
    """A dashboard whose engine heartbeats every 0.2 s, so a stalled loop shows at once."""
    recorder, controls = Recorder(), Controls()
    config = make_config(queues={"default": {"concurrency": 2}}, poll_interval=0.2,
                         lifeline={"heartbeat_interval": 0.2, "rescue_after": 30},
                         dashboard={"token": TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=web_registry(recorder, controls))
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, controls, recorder, server)
    finally:
        await engine.stop(grace=1)


async def test_a_900_kb_deep_job_page_is_small_and_heartbeats_keep_landing(fast_beats: Dashboard,
                                                                           http: Any) -> None:
    engine = fast_beats.engine
    args = deep_args()
    assert 850_000 < len(json.dumps(args)) < 950_000
    job = await engine.enqueue("scripted", args, delay=3600)
    lifeline = engine.lifeline
    assert lifeline is not None
    worst_age = 0.0
    sizes: list[int] = []
    bodies: list[str] = []

    async def load(path: str) -> None:
        async with http.get(fast_beats.url + path, headers=fast_beats.auth) as response:
            assert response.status == 200
            body = await response.read()
            sizes.append(len(body))
            bodies.append(body.decode())

    async def watch(done: anyio.Event) -> None:
        nonlocal worst_age
        while not done.is_set():
            worst_age = max(worst_age, lifeline.heartbeat_age or 0.0)
            await anyio.sleep(0.05)

    done = anyio.Event()
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(watch, done)
        async with anyio.create_task_group() as pages:
            for index in range(5):
                pages.start_soon(load, f"/jobs/{job.id}" if index % 2 == 0 else f"/partials/jobs/{job.id}")
        done.set()
    elapsed = time.monotonic() - started
    assert len(sizes) == 5
    assert max(sizes) < 200_000, sizes
    assert all(f"download the whole job from /api/jobs/{job.id}" in body for body in bodies)
    # Heartbeats every 0.2 s: one that waited over 2 s means the loop was held by a page.
    assert worst_age < 2.0, f"heartbeat age reached {worst_age:.2f} s while 5 pages took {elapsed:.2f} s"
    async with http.get(f"{fast_beats.url}/api/jobs/{job.id}", headers=fast_beats.auth) as response:
        assert response.status == 200
        assert (await response.json())["job"]["args"] == args  # the whole job is still there
