"""Fixtures for the dashboard tests: an engine with scripted handlers served on a free
port, an HTTP client, and one headless Chromium for the whole session."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import pytest_asyncio
from playwright.async_api import async_playwright

from engine.core.job import Job
from engine.core.registry import Registry
from engine.engine import Engine
from engine.web import serve
from tests.handlers.conftest import ssh_peer  # noqa: F401  (the asyncssh server, for ssh jobs' pages)
from tests.support.scripted import Recorder, scripted_registry

TOKEN = "operator-token-for-tests-0123456789"
READONLY_TOKEN = "readonly-token-for-tests-0123456789"
SECRET_VALUE = "hunter2-super-secret-value"
XSS = "<img src=x onerror=alert(1)>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Controls:
    """What tests steer handlers with: gates to release, switches that fix a flaky kind."""

    gates: dict[str, anyio.Event] = field(default_factory=dict)
    fixed: set[str] = field(default_factory=set)

    def gate(self, name: str) -> anyio.Event:
        return self.gates.setdefault(name, anyio.Event())


def web_registry(recorder: Recorder, controls: Controls) -> Registry:
    """``scripted`` (tests/support), ``gated`` (waits for its gate) and ``flaky`` (fails
    until the test fixes its key; one attempt, so it is discarded at once)."""
    registry = scripted_registry(recorder)

    @registry.handler("gated", max_attempts=3)
    async def gated(job: Job) -> Any:
        await controls.gate(job.args["gate"]).wait()
        return {"released": job.args["gate"]}

    @registry.handler("flaky", max_attempts=1)
    async def flaky(job: Job) -> Any:
        if job.args["key"] not in controls.fixed:
            raise RuntimeError(f"upstream unavailable for {job.args['key']}")
        return {"fixed": job.args["key"]}

    return registry


@dataclass
class Dashboard:
    engine: Engine
    url: str
    controls: Controls
    recorder: Recorder
    server: Any

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


@pytest_asyncio.fixture
async def dashboard(make_config: Any) -> AsyncIterator[Dashboard]:
    """A processing engine (queues default and mail) with the dashboard on a free port."""
    recorder, controls = Recorder(), Controls()
    config = make_config(
        queues={"default": {"concurrency": 2}, "mail": {"concurrency": 2}}, poll_interval=0.2,
        secrets=["DASH_SECRET"],
        dashboard={"token": TOKEN, "readonly_token": READONLY_TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=web_registry(recorder, controls), env={"DASH_SECRET": SECRET_VALUE})
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, controls, recorder, server)
            for gate in controls.gates.values():
                gate.set()
    finally:
        await engine.stop(grace=1)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: keep cookies for 127.0.0.1 (browsers do; aiohttp's jar does not by default)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def login(http: aiohttp.ClientSession, url: str, token: str = TOKEN) -> str:
    """Log in with the form; returns the page's CSRF token (the session cookie stays in ``http``)."""
    async with http.post(f"{url}/login", data={"token": token, "next": "/"}, allow_redirects=True) as response:
        assert response.status == 200, await response.text()
        page = await response.text()
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, "the dashboard page carries a CSRF token"
    return match.group(1)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Any]:
    """One Chromium for the session (launching takes about a second)."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) and page; JS errors fail the test."""
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(10_000)
    yield tab
    await context.close()
    assert not errors, f"JavaScript errors: {errors}"
