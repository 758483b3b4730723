"""Live updates in real Chromium: changes pushed over server-sent events reach an open page
within a second with no polling; the refresh control pauses them and is remembered; with the
stream blocked, htmx polling takes over."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
import anyio
from playwright.async_api import expect

from engine.web.context import SNAPSHOTS
from engine.web.live import LIVE
from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard
from tests.web.test_dashboard_e2e import _cell, _log_in


def _count_partials(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if "/partials/" in request.url else None)
    return seen


async def _state(page: Any, name: str) -> Any:
    return await page.evaluate(f"window.__jobengine.{name}")


async def _quiet_for_an_interval(page: Any) -> None:
    """The control spaces updates at least one interval (1 s here) apart: start a measurement
    only when the last update is that old, so it measures the push, not the spacing."""
    await wait_until(lambda: page.evaluate("Date.now() - window.__jobengine.last >= 1000"),
                     what="one interval since the last update")


async def test_a_state_change_is_pushed_to_the_open_page_within_a_second(dashboard: Dashboard, page: Any) -> None:
    partials = _count_partials(page)
    await _log_in(page, dashboard)
    await page.select_option("#refresh-control", "1")
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    # Pushed, so no polling: the region's only trigger is the pushed refresh.
    await expect(page.locator("#overview")).to_have_attribute("hx-trigger", "jobengine:refresh")
    await wait_until(lambda: _state(page, "refreshes"), what="the refresh that follows connecting")
    settled = len(partials)

    await _quiet_for_an_interval(page)
    await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)  # an insert: NOTIFY from Postgres
    started = time.monotonic()
    await expect(_cell(page, "default", "scheduled")).to_have_text("1", timeout=1000)
    shown = time.monotonic() - started
    job = await dashboard.engine.enqueue("gated", {"gate": "push"})
    await expect(_cell(page, "default", "executing")).to_have_text("1")
    await _quiet_for_an_interval(page)
    dashboard.controls.gate("push").set()  # executing -> completed: no NOTIFY, this node's job events
    released = time.monotonic()
    await expect(_cell(page, "default", "completed")).to_have_text("1", timeout=1000)
    print(f"\npushed: an insert shown {shown:.2f}s after it, a completion {time.monotonic() - released:.2f}s "
          "after the state change")
    assert (await dashboard.engine.get(job.id)).state == "completed"  # type: ignore[union-attr]
    assert await _state(page, "events") >= 2 and len(partials) > settled
    assert await page.locator("#live-state").text_content() == "live"


async def test_the_refresh_control_pauses_updates_and_is_remembered(dashboard: Dashboard, page: Any) -> None:
    partials = _count_partials(page)
    await _log_in(page, dashboard)
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    await expect(page.locator("#overview")).to_have_attribute("data-refreshed", re.compile(r"\d+"))  # connected
    await page.select_option("#refresh-control", "pause")
    await expect(page.locator("#live-state")).to_have_text("paused")
    before = len(partials)
    await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    await wait_until(lambda: _state(page, "skipped"), what="the pushed change, skipped while paused")
    assert len(partials) == before
    await expect(_cell(page, "default", "scheduled")).to_have_text("0")

    await page.reload()
    await expect(page.locator("#refresh-control")).to_have_value("pause")
    await expect(page.locator("#live-state")).to_have_text("paused")
    await page.select_option("#refresh-control", "1")
    await expect(_cell(page, "default", "scheduled")).to_have_text("1")  # resuming fetches what was missed
    assert await page.evaluate("window.localStorage.getItem('jobengine.refresh')") == "1"


async def test_polling_takes_over_while_the_event_stream_is_down(dashboard: Dashboard, page: Any) -> None:
    await page.route("**/events", lambda route: route.abort())
    await _log_in(page, dashboard)
    await page.select_option("#refresh-control", "1")
    await expect(page.locator("#live-state")).to_have_text("polling")
    await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    await expect(_cell(page, "default", "scheduled")).to_have_text("1", timeout=5000)
    assert await _state(page, "events") == 0


async def test_twenty_open_pages_cost_one_overview_read_per_interval(dashboard: Dashboard) -> None:
    """Twenty pages on the event stream, each fetching the overview on every pushed change,
    while jobs run for two seconds: Postgres builds the overview at most once per interval."""
    snapshots = dashboard.server.app[SNAPSHOTS]
    builds: list[float] = []
    build = snapshots._build

    async def counted() -> Any:
        builds.append(time.monotonic())
        return await build()

    snapshots._build = counted  # type: ignore[method-assign]  (counts the real reads)
    fetched: list[int] = []

    async def browser(session: aiohttp.ClientSession) -> None:
        async with session.get(f"{dashboard.url}/events", headers=dashboard.auth) as stream:
            async for line in stream.content:
                if line.startswith(b"event: change"):
                    async with session.get(f"{dashboard.url}/partials/overview", headers=dashboard.auth) as page:
                        assert page.status == 200
                        fetched.append(1)

    async with aiohttp.ClientSession() as session, anyio.create_task_group() as pages:
        for _ in range(20):
            pages.start_soon(browser, session)
        await wait_until(lambda: len(dashboard.server.app[LIVE].clients) == 20, what="20 pages connected")
        builds.clear()
        started = time.monotonic()
        for n in range(20):
            await dashboard.engine.enqueue("scripted", {"action": "ok", "n": n})
            await anyio.sleep(0.1)  # the load itself: one job every 100 ms for two seconds
        elapsed = time.monotonic() - started
        pages.cancel_scope.cancel()
    ttl = snapshots.ttl
    print(f"\n20 pages, {len(fetched)} fragment fetches in {elapsed:.1f}s: {len(builds)} overview reads "
          f"(ttl {ttl}s)")
    assert len(fetched) >= 20 * 5  # the pages did follow the pushes
    # About one read per interval (a fetch straggling past the interval may add one), never per
    # page. Timed from the first read to the last: on a loaded machine the pushes trail the load.
    span = builds[-1] - builds[0] if builds else 0.0
    assert len(builds) <= span / ttl + 3 and 4 * len(builds) < len(fetched), builds  # shared, not per page
