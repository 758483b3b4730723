"""Regenerate the Alerts screenshots in docs/screenshots/: the alerts page at desktop and phone
width in light and dark, and the overview's banner while an alert fires.

    .venv/bin/python -m tests.web.alert_screenshots       # embedded Postgres in a temp dir
    JOBENGINE_TEST_DATABASE_URL=postgresql://... .venv/bin/python -m tests.web.alert_screenshots

Not part of the test suite (pytest only collects test_*.py).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import asyncpg
from playwright.async_api import async_playwright

from engine.core.config import build_config
from engine.core.job import JobSpec
from engine.engine import Engine
from engine.web import serve
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until
from tests.web.conftest import CHROMIUM_ARGS, TOKEN, Controls, web_registry
from tests.web.screenshots import OUT, SIZES, _embedded_postgres

ALERTS = [
    {"name": "mail-backlog", "metric": "backlog", "queue": "mail", "threshold": 10, "for": "1m",
     "notify": {"email": "ops@example.com", "webhook": "https://hooks.example.com/jobengine"}},
    {"name": "reports-slow", "metric": "oldest_waiting", "queue": "reports", "threshold": "10m"},
    {"name": "failures", "metric": "failure_rate", "threshold": 0.2, "window": "1h",
     "notify": {"webhook": "https://hooks.example.com/jobengine"}},
    {"name": "no-consumer", "metric": "no_consumer"},
    {"name": "nightly-missed", "metric": "cron_missed", "definition": "nightly-backup"},
    {"name": "node-lost", "metric": "node_lost", "notify": {"email": "oncall@example.com"}},
]
# (alert, event, value, threshold, hours ago)
HISTORY = [("node-lost", "fired", 1, 0, 30), ("node-lost", "recovered", 0, 0, 29.8),
           ("failures", "fired", 0.34, 0.2, 6), ("failures", "recovered", 0.05, 0.2, 5.5),
           ("mail-backlog", "fired", 1480, 10, 3), ("mail-backlog", "recovered", 0, 10, 2.7)]


async def seed(engine: Engine) -> None:
    """A mail backlog (queue paused) that fires, and a day of past transitions."""
    await engine.pause("mail")
    await engine.enqueue_many([JobSpec(kind="scripted", args={"to": f"player{n}@example.com"}, queue="mail")
                               for n in range(24)])
    store = engine.store
    assert store is not None
    async with store.pool.acquire() as conn:
        await conn.executemany(
            f'INSERT INTO "{store.schema}".alert_history (name, event, value, threshold, at) '
            "VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5 * 3600))",
            [(name, event, value, limit, hours) for name, event, value, limit, hours in HISTORY])
        # As if the backlog had been above the threshold for a while already (holding the
        # round's lease, so no round in progress overwrites it).
        async with conn.transaction():
            await conn.execute(f'SELECT 1 FROM "{store.schema}".alert_rounds FOR UPDATE')
            await conn.execute(f'INSERT INTO "{store.schema}".alert_states (name, state, since) '
                               "VALUES ('mail-backlog', 'pending', now() - interval '5 minutes') "
                               "ON CONFLICT (name) DO UPDATE SET state = 'pending', since = excluded.since")

    async def firing() -> bool:
        states = await store.alert_states()
        return states.get("mail-backlog", {}).get("state") == "firing"

    await wait_until(firing, timeout=30)


async def _logged_in(browser: Any, url: str, viewport: dict[str, int], scheme: str) -> Any:
    context = await browser.new_context(viewport=viewport, device_scale_factor=1, color_scheme=scheme)
    page = await context.new_page()
    await page.goto(url + "/login")
    await page.fill("input[name=token]", TOKEN)
    await page.click("form.box button")
    await page.wait_for_selector("a.alert-banner")
    return page


async def shoot(url: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for size, viewport in SIZES.items():
            for scheme in ("light", "dark"):
                page = await _logged_in(browser, url, viewport, scheme)
                if size == "desktop" and scheme == "light":
                    await page.locator("a.alert-banner").screenshot(path=str(OUT / "alerts-banner.png"))
                await page.goto(url + "/alerts")
                await page.wait_for_selector("table.alerts.history")
                await page.screenshot(path=str(OUT / f"alerts-{size}-{scheme}.png"), full_page=True)
                await page.context.close()
        await browser.close()


async def main() -> None:
    database_url = os.environ.get("JOBENGINE_TEST_DATABASE_URL")
    server: Any = None
    if database_url is None:
        server = _embedded_postgres()
        database_url = server.get_uri()
    try:
        config = build_config({
            "database_url": database_url, "schema": "alert_screenshots", "poll_interval": 0.2,
            "queues": {"default": {"concurrency": 4}, "mail": {"concurrency": 10}},
            "alerts": ALERTS, "alerts_interval": 1,
            "dashboard": {"token": TOKEN, "refresh_interval": 1}, "logging": {"level": "warning"}})
        conn = await asyncpg.connect(database_url)
        await conn.execute('DROP SCHEMA IF EXISTS "alert_screenshots" CASCADE')
        await conn.close()
        engine = Engine(config=config, registry=web_registry(Recorder(), Controls()))
        async with engine:
            await seed(engine)
            async with serve(engine, bind="127.0.0.1:0") as served:
                await shoot(served.url)
                print("wrote alerts-*.png to", OUT)
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    anyio.run(main)
