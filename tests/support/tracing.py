"""OpenTelemetry for tests: the real SDK with its in-memory exporter as the global provider
for one test, aiohttp client calls instrumented, and everything unset afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from engine.core import tracing


def reset_global_provider() -> None:
    # The API lets a process set its provider once; tests set and unset it (as the
    # OpenTelemetry project's own test utilities do), so other tests run untraced.
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    tracing.refresh()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_global_provider()
    trace.set_tracer_provider(provider)
    assert tracing.refresh()
    AioHttpClientInstrumentor().instrument()
    try:
        yield exporter
    finally:
        AioHttpClientInstrumentor().uninstrument()
        provider.shutdown()
        reset_global_provider()


@pytest_asyncio.fixture
async def hook_peer() -> AsyncIterator[dict[str, Any]]:
    """A real HTTP server that keeps the traceparent header each request carried."""
    seen: dict[str, Any] = {"traceparents": []}

    async def hook(request: web.Request) -> web.Response:
        seen["traceparents"].append(request.headers.get("traceparent"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen["url"] = f"http://127.0.0.1:{port}/hook"
    try:
        yield seen
    finally:
        await runner.cleanup()


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]
