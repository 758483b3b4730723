"""Runs the framework examples under real servers (uvicorn, aiohttp, Django's WSGI handler)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from tests.support.tracing import hook_peer, spans  # noqa: F401  (fixtures, found by name)
from tests.support.waiting import wait_until


@asynccontextmanager
async def _uvicorn(app: Any) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, what="uvicorn started")
        if task.done():
            task.result()  # the lifespan failed: show why
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def run_asgi() -> Callable[[Any], Any]:
    """``async with run_asgi(app) as base_url``: the ASGI app under a real uvicorn, lifespan on."""
    return _uvicorn
