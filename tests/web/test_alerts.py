"""The alerts page, GET /api/alerts and the jobengine_alerts_firing gauge, with a real engine
evaluating: a backlog alert fires and recovers, the open page updates itself (pushed, no
reload), the overview shows a banner while it fires, and a viewer may read it all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from playwright.async_api import expect

from engine.engine import Engine
from engine.web import serve
from tests.support.waiting import wait_until
from tests.web.conftest import READONLY_TOKEN, TOKEN, Controls, Dashboard, Recorder, web_registry
from tests.web.test_dashboard_e2e import _log_in

ALERTS = [
    {"name": "held-backlog", "metric": "backlog", "queue": "held", "threshold": 1,
     "notify": {"webhook": "https://hooks.example.test/token-in-path"}},
    {"name": "lost-nodes", "metric": "node_lost"},
]


@pytest_asyncio.fixture
async def watched(make_config: Any) -> AsyncIterator[Dashboard]:
    """A processing engine with two alerts, evaluated every 0.2 s; queue 'held' is paused."""
    recorder, controls = Recorder(), Controls()
    config = make_config(queues={"default": {"concurrency": 2}, "held": {"concurrency": 2, "paused": True}},
                         poll_interval=0.2, alerts=ALERTS, alerts_interval=0.2,
                         dashboard={"token": TOKEN, "readonly_token": READONLY_TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=web_registry(recorder, controls))
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, controls, recorder, server)
    finally:
        await engine.stop(grace=1)


async def _alerts(http: Any, dashboard: Dashboard, token: str = TOKEN) -> dict[str, Any]:
    async with http.get(f"{dashboard.url}/api/alerts", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
        return await response.json()  # type: ignore[no-any-return]


async def _state(http: Any, dashboard: Dashboard, want: str) -> dict[str, Any] | None:
    doc = await _alerts(http, dashboard, READONLY_TOKEN)  # a viewer may read alerts
    held = doc["alerts"][0]
    return held if held["state"] == want else None


async def _metrics(http: Any, dashboard: Dashboard) -> str:
    async with http.get(f"{dashboard.url}/metrics", headers=dashboard.auth) as response:
        return await response.text()  # type: ignore[no-any-return]


async def test_the_api_and_metrics_follow_an_alert_that_fires_and_recovers(watched: Dashboard, http: Any) -> None:
    doc = await _alerts(http, watched)
    assert [(a["name"], a["metric"], a["threshold"]) for a in doc["alerts"]] == [
        ("held-backlog", "backlog", 1), ("lost-nodes", "node_lost", 0)]
    assert doc["alerts"][0]["notify"] == ["webhook"] and "token-in-path" not in str(doc)  # never the URL
    jobs = [await watched.engine.enqueue("scripted", {"action": "ok", "password": "pw"}, queue="held")
            for _ in range(2)]
    held = await wait_until(lambda: _state(http, watched, "firing"), what="the alert firing")
    assert held["value"] == 2 and held["value_text"] == "2 jobs" and held["since"]
    assert [h["event"] for h in held["history"]] == ["fired"] and "password" not in str(held)
    assert 'jobengine_alerts_firing{alert="held-backlog"} 1.0' in await _metrics(http, watched)
    assert 'jobengine_alerts_firing{alert="lost-nodes"} 0.0' in await _metrics(http, watched)

    for job in jobs:
        await watched.engine.delete(job.id)
    held = await wait_until(lambda: _state(http, watched, "ok"), what="the alert recovered")
    assert [h["event"] for h in held["history"]] == ["recovered", "fired"]
    assert 'jobengine_alerts_firing{alert="held-backlog"} 0.0' in await _metrics(http, watched)


async def test_the_page_updates_itself_and_the_overview_shows_a_banner(watched: Dashboard, page: Any) -> None:
    await _log_in(page, watched, "/alerts")
    row = page.locator('table.alerts:not(.history) tr[data-alert="held-backlog"]')
    await expect(row).to_have_attribute("data-state", "ok")
    await expect(page.locator("nav a[aria-current=page]")).to_have_text("Alerts")
    await page.evaluate("window.__noReload = true")
    jobs = [await watched.engine.enqueue("scripted", {"action": "ok"}, queue="held") for _ in range(2)]
    await expect(row).to_have_attribute("data-state", "firing")
    await expect(row.locator("[data-value]")).to_have_text("2 jobs")
    await expect(page.locator('table.history tr[data-event="fired"]')).to_have_count(1)
    assert await page.evaluate("window.__noReload") is True  # updated in place, not reloaded

    await page.goto(watched.url + "/")
    banner = page.locator("a.alert-banner")
    await expect(banner).to_contain_text("1 alert firing")
    await expect(banner).to_contain_text("held-backlog")
    await page.evaluate("window.__noReload = true")
    for job in jobs:
        await watched.engine.delete(job.id)
    await expect(banner).to_have_count(0)  # the overview's fragment drops it on its own
    assert await page.evaluate("window.__noReload") is True

    await page.keyboard.press("g")
    await page.keyboard.press("a")
    await expect(page).to_have_url(watched.url + "/alerts")
    await expect(page.locator('table.history tr[data-event="recovered"]')).to_have_count(1)
