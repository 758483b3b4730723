"""Look and feel in real Chromium: no page overflows a phone's width, dark mode follows the
system and the toggle (remembered), keyboard shortcuts, and times in the browser's zone with
UTC on hover."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from tests.support.waiting import wait_until
from tests.web.conftest import TOKEN, Dashboard

DARK_BG = "rgb(11, 16, 32)"
LIGHT_BG = "rgb(244, 246, 250)"


async def _page(browser: Any, dashboard: Dashboard, **context: Any) -> Any:
    tab = await (await browser.new_context(**context)).new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.errors = errors
    await tab.goto(dashboard.url + "/login")
    await tab.fill("input[name=token]", TOKEN)
    await tab.click("form.box button")
    await expect(tab.locator("header.top .role")).to_have_text("operator")
    await _ready(tab)
    return tab


async def _ready(page: Any) -> None:
    """The page's deferred script has wired its controls (keys, times, live updates)."""
    await expect(page.locator("html[data-js=ready]")).to_have_count(1)


async def _background(tab: Any) -> str:
    return await tab.evaluate("getComputedStyle(document.body).backgroundColor")  # type: ignore[no-any-return]


async def test_no_page_is_wider_than_a_phone(dashboard: Dashboard, browser: Any) -> None:
    job = await dashboard.engine.enqueue("flaky", {"key": "phone", "note": "x" * 300}, tags=["a-long-tag-name"])
    await wait_until(lambda: _finished(dashboard, job.id))
    tab = await _page(browser, dashboard, viewport={"width": 390, "height": 844}, is_mobile=True)
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/cron", "/nodes", "/alerts", "/jobs?q=colour:red"):
        await tab.goto(dashboard.url + path)
        widths = await tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{path}: the page is {widths[0]}px wide on a {widths[1]}px screen"
    assert not tab.errors
    await tab.context.close()


async def _finished(dashboard: Dashboard, job_id: int) -> bool:
    job = await dashboard.engine.get(job_id)
    return job is not None and job.state == "discarded"


async def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(dashboard: Dashboard, browser: Any) -> None:
    tab = await _page(browser, dashboard, color_scheme="dark")
    assert await _background(tab) == DARK_BG
    toggle = tab.locator("#theme-toggle")
    await expect(toggle).to_contain_text("auto")
    await toggle.click()  # auto -> dark
    await expect(toggle).to_contain_text("dark")
    await toggle.click()  # dark -> light, although the system is dark
    await expect(toggle).to_contain_text("light")
    assert await _background(tab) == LIGHT_BG
    await tab.goto(dashboard.url + "/jobs")
    assert await _background(tab) == LIGHT_BG  # remembered, and applied before the first paint
    assert await tab.evaluate("window.localStorage.getItem('jobengine.theme')") == "light"
    await toggle.click()  # light -> auto: the system's dark again
    assert await _background(tab) == DARK_BG
    assert not tab.errors
    await tab.context.close()


async def test_keyboard_shortcuts(dashboard: Dashboard, page: Any) -> None:
    await page.goto(dashboard.url + "/login")
    await page.fill("input[name=token]", TOKEN)
    await page.click("form.box button")
    await expect(page.locator("header.top .role")).to_have_text("operator")
    await _ready(page)
    await page.keyboard.press("/")
    await expect(page.locator("#search")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#search")).not_to_be_focused()
    await page.keyboard.press("g")
    await page.keyboard.press("n")
    await expect(page).to_have_url(dashboard.url + "/nodes")
    await _ready(page)
    await page.keyboard.press("g")
    await page.keyboard.press("j")
    await expect(page).to_have_url(dashboard.url + "/jobs")
    await _ready(page)
    await page.keyboard.press("g")
    await page.keyboard.press("c")
    await expect(page).to_have_url(dashboard.url + "/cron")
    await _ready(page)
    await page.keyboard.press("g")
    await page.keyboard.press("o")
    await expect(page).to_have_url(dashboard.url + "/")
    await _ready(page)
    await page.keyboard.press("?")
    await expect(page.locator("#shortcuts")).to_be_visible()
    await expect(page.locator("#shortcuts")).to_contain_text("definitions")
    await page.keyboard.press("Escape")
    await expect(page.locator("#shortcuts")).to_be_hidden()
    await page.locator("#search").fill("g")  # typing in a field is never a shortcut
    await page.keyboard.press("n")
    await expect(page).to_have_url(dashboard.url + "/")
    await _ready(page)


async def test_times_are_shown_in_the_browsers_zone_with_utc_on_hover(dashboard: Dashboard, browser: Any) -> None:
    job = await dashboard.engine.enqueue("flaky", {"key": "zone"})
    await wait_until(lambda: _finished(dashboard, job.id))
    tab = await _page(browser, dashboard, timezone_id="Asia/Seoul", locale="en-GB")
    await tab.goto(f"{dashboard.url}/jobs/{job.id}")
    stamp = tab.locator(".timeline time[data-local=clock]").first
    moment = datetime.fromisoformat(await stamp.get_attribute("datetime"))
    await expect(stamp).to_have_text(moment.astimezone(ZoneInfo("Asia/Seoul")).strftime("%H:%M:%S"))
    assert await stamp.get_attribute("title") == moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")
    relative = tab.locator("dd time[data-local=relative]").first
    # The server writes the UTC time; the page's script adds the browser's zone when it runs.
    await expect(relative).to_have_attribute("title", re.compile(r"(GMT\+9|KST).* UTC$"))
    await tab.context.close()
