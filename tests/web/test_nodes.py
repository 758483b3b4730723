"""The nodes page and GET /api/nodes with two real engines: one in this process serving the
dashboard, one a `jobengine start` subprocess; after a SIGKILL the second leaves the live list
within the rescue window, shows as lost with the job rescued from it, and the overview flags
its queue, now waiting with no consumer."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from playwright.async_api import expect

from engine.core.registry import Registry
from engine.engine import Engine
from engine.web import serve
from tests.faults import conftest as faults
from tests.support import ledger
from tests.support.waiting import wait_until
from tests.web.conftest import TOKEN, Controls, Dashboard, Recorder
from tests.web.test_dashboard_e2e import _log_in

BASE_SETTINGS = faults.BASE_SETTINGS
RESCUE_AFTER = BASE_SETTINGS["lifeline"]["rescue_after"]
# The fault tests' fixtures: engines as `jobengine start` subprocesses writing a ledger.
spawn_engine = faults.spawn_engine
ledger_path = faults.ledger_path


@pytest_asyncio.fixture
async def watcher(make_config: Any) -> AsyncIterator[Dashboard]:
    """The engine that serves the dashboard: it runs only queue 'web', and rescues fast."""
    registry = Registry()
    ledger.register(registry)
    config = make_config(queues={"web": {"concurrency": 4}}, lifeline=BASE_SETTINGS["lifeline"], poll_interval=0.2,
                         dashboard={"token": TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=registry)
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, Controls(), Recorder(), server)
    finally:
        await engine.stop(grace=1)


async def _nodes(http: Any, dashboard: Dashboard) -> dict[str, Any]:
    async with http.get(f"{dashboard.url}/api/nodes", headers=dashboard.auth) as response:
        assert response.status == 200
        return await response.json()  # type: ignore[no-any-return]


async def test_two_engines_listed_then_one_lost_after_sigkill(watcher: Dashboard, spawn_engine: Any, http: Any,
                                                              page: Any, pg_url: str, schema: str) -> None:
    worker = await spawn_engine(pg_url, schema, queues={"default": {"concurrency": 20}})
    job = await watcher.engine.enqueue(ledger.KIND, {"first_sleep": 600}, queue="default")

    async def running_on_worker() -> dict[str, Any] | None:
        doc = await _nodes(http, watcher)
        found = [n for n in doc["nodes"] if n["pid"] == worker.pid]
        return doc if found and found[0]["queues"][0]["running"] == 1 else None

    doc = await wait_until(running_on_worker, what="the worker's heartbeat reporting its running job")
    by_pid = {n["pid"]: n for n in doc["nodes"]}
    assert set(by_pid) == {os.getpid(), worker.pid}
    remote = by_pid[worker.pid]
    assert remote["host"] == socket.gethostname() and remote["version"] and remote["started_at"]
    assert remote["queues"][0] == {"name": "default", "concurrency": 20, "running": 1, "paused": False}
    assert by_pid[os.getpid()]["queues"][0] == {"name": "web", "concurrency": 4, "running": 0, "paused": False}
    assert remote["heartbeat_age_seconds"] < RESCUE_AFTER

    await _log_in(page, watcher, "/nodes")
    live = page.locator("table.nodes:not(.departed) tbody tr")
    await expect(live).to_have_count(2)
    await expect(page.locator(f'tr[data-node="{remote["name"]}"] .chip[data-queue="default"]')).to_contain_text(
        "default 1/20")

    worker.send(signal.SIGKILL)
    await worker.wait_exit(5)
    lost = page.locator(f'table.departed tr[data-node="{remote["name"]}"][data-status="lost"]')
    await expect(lost).to_be_visible(timeout=(RESCUE_AFTER + 4) * 1000)  # refreshed live, no reload
    await expect(live).to_have_count(1)
    await expect(lost.locator("[data-rescued]")).to_contain_text(f"#{job.id}")
    departed = (await _nodes(http, watcher))["departed"]
    assert [(n["name"], n["reason"], n["rescued"], n["rescued_ids"]) for n in departed] == [
        (remote["name"], "lost", 1, [job.id])]

    await page.goto(watcher.url + "/")
    flag = page.locator('tr[data-queue="default"] [data-flag="no-consumer"]')
    await expect(flag).to_be_visible()
    await expect(page.locator('tr[data-queue="web"] [data-flag="no-consumer"]')).to_have_count(0)


async def test_a_node_that_stops_cleanly_is_listed_as_stopped(watcher: Dashboard, make_config: Any,
                                                              http: Any) -> None:
    second = Engine(config=make_config(queues={"other": {"concurrency": 2}}))
    await second.start()
    await wait_until(lambda: _count_live(http, watcher, 2), what="both engines live")
    await second.stop(grace=1)

    async def stopped() -> list[Any]:
        doc = await _nodes(http, watcher)
        return [n for n in doc["departed"] if n["name"] == second.node and n["reason"] == "stopped"]

    (gone,) = await wait_until(stopped, what="the stopped engine among the departed")
    assert gone["rescued"] == 0 and "other" in gone["queues"] and gone["pid"] == os.getpid()
    assert [n["name"] for n in (await _nodes(http, watcher))["nodes"]] == [watcher.engine.node]


async def _count_live(http: Any, dashboard: Dashboard, count: int) -> bool:
    return len((await _nodes(http, dashboard))["nodes"]) == count
