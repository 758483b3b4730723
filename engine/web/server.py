"""Serving the dashboard next to an engine, in the same event loop."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from aiohttp import web

from engine.core.config import ConfigError, DashboardConfig
from engine.engine import Engine
from engine.web.app import create_app

log = structlog.get_logger("jobengine.web")
LOCAL_ONLY = "127.0.0.1"
# An unauthenticated client must not hold a connection open by sending a request slowly:
# a connection must deliver its request's headers within HEADER_TIMEOUT seconds of opening
# (or of its previous response), and the body within BODY_TIMEOUT seconds of the headers.
HEADER_TIMEOUT = 15.0
BODY_TIMEOUT = 30.0


class DashboardBindError(ConfigError):
    """The dashboard could not listen; ``in_use`` when another process holds the address."""

    def __init__(self, message: str, *, in_use: bool) -> None:
        super().__init__(message)
        self.in_use = in_use


@dataclass(frozen=True, slots=True)
class DashboardServer:
    """A running dashboard: its base URL and the aiohttp application."""

    url: str
    host: str
    port: int
    app: web.Application


def parse_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` -> ("127.0.0.1", 8080); ``"[::]:8080"`` and ``":8080"`` work too."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"'dashboard.bind': {bind!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def listen_address(settings: DashboardConfig, bind: str | None = None) -> tuple[str, int]:
    """Where to listen. Without a token, only 127.0.0.1, whatever ``bind`` asks: an open
    dashboard on a reachable address would hand anyone control of the jobs."""
    host, port = parse_bind(bind or settings.bind)
    if not settings.token:
        if host != LOCAL_ONLY:
            log.warning(f"dashboard.token is not set: refusing to listen on {host}; listening on 127.0.0.1 "
                        "only (set dashboard.token to serve other addresses)", requested=host, port=port)
        else:
            log.info("dashboard.token is not set: listening on 127.0.0.1 only, no login needed")
        host = LOCAL_ONLY
    return host, port


def body_deadline(timeout: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: read a request's whole body within ``timeout`` seconds, else answer 408
    and close (the handlers read the body read here)."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                log.warning("request body not received in time; closing", path=request.path, timeout=timeout)
                raise web.HTTPRequestTimeout(text=f"request body not received within {timeout:g}s",
                                             headers={"Connection": "close"}) from None
        return await handler(request)

    return middleware


@asynccontextmanager
async def serve(engine: Engine, *, bind: str | None = None, settings: DashboardConfig | None = None,
                header_timeout: float = HEADER_TIMEOUT,
                body_timeout: float = BODY_TIMEOUT) -> AsyncIterator[DashboardServer]:
    """Serve the dashboard, API, /metrics and /healthz for a started ``engine`` until the
    block exits. ``bind`` overrides ``dashboard.bind`` (port 0 picks a free port).

    Example::

        async with Engine(config="config/jobengine.toml") as engine:
            async with serve(engine) as server:
                print("dashboard at", server.url)
                await anyio.sleep_forever()
    """
    settings = settings or engine.config.dashboard
    host, port = listen_address(settings, bind)
    app = create_app(engine, settings)
    # Innermost: the app's own middlewares (authentication, JSON errors) run around it.
    app.middlewares.append(body_deadline(body_timeout))
    # aiohttp's keep-alive timer also runs from a connection's start until its first request's
    # headers are complete: it is the header timeout (its default is an hour).
    # lingering_time: after an answer that left the body unread (a 401, the 408 above), wait
    # this long for the rest before closing, not aiohttp's 10 s.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0,
                           keepalive_timeout=header_timeout, lingering_time=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise DashboardBindError(f"'dashboard.bind': cannot listen on {host}:{port}: "
                                     f"{exc.strerror or exc}", in_use=exc.errno == errno.EADDRINUSE) from None
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        server = DashboardServer(f"http://{shown}:{bound_port}", bound_host, bound_port, app)
        log.info("dashboard listening", url=server.url, auth="token" if settings.token else "local only")
        yield server
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_unless_busy(engine: Engine) -> AsyncIterator[DashboardServer | None]:
    """:func:`serve` for ``jobengine start``: when the address is taken (several engines on
    one host with the default bind), run without a dashboard and say so, rather than not
    processing jobs at all. Any other problem with the address still fails the start."""
    try:
        async with serve(engine) as server:
            yield server
            return
    except DashboardBindError as exc:
        if not exc.in_use:
            raise
        log.warning("dashboard not started: its address is in use (another jobengine on this host?); "
                    "this process runs jobs without one", error=str(exc))
    yield None
