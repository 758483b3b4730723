"""A client that sends its request slowly cannot hold a dashboard connection open: headers
must arrive within the header timeout, the body within the body timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio

from engine.engine import Engine
from engine.web.server import serve

TOKEN = "operator-token-for-slow-client-tests-0123456789"


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; how long it took and what it said."""
    started = time.monotonic()
    with anyio.fail_after(seconds):
        answer = await reader.read()
    return time.monotonic() - started, answer


async def test_a_connection_that_never_finishes_its_headers_is_closed(make_config: Any) -> None:
    config = make_config(dashboard={"token": TOKEN})
    async with Engine(config=config) as engine, serve(engine, bind="127.0.0.1:0", header_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        await writer.drain()
        waited, answer = await _closed_within(reader, 5.0)
        writer.close()
    assert waited < 3.0 and answer == b""


async def test_a_body_that_never_arrives_gets_408_and_the_connection_closed(make_config: Any) -> None:
    config = make_config(dashboard={"token": TOKEN})
    async with Engine(config=config) as engine, serve(engine, bind="127.0.0.1:0", body_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"jobType\"")
        await writer.drain()
        waited, answer = await _closed_within(reader, 5.0)
        writer.close()
    assert waited < 3.0 and answer.startswith(b"HTTP/1.1 408"), answer[:200]
