"""Regenerate the Definitions screenshots in docs/screenshots/: the list, the form with a
field error, and a definition's run history, shot in headless Chromium.

    .venv/bin/python -m tests.web.definition_screenshots       # embedded Postgres in a temp dir
    JOBENGINE_TEST_DATABASE_URL=postgresql://... .venv/bin/python -m tests.web.definition_screenshots

Not part of the test suite (pytest only collects test_*.py).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
from playwright.async_api import async_playwright

from engine.core.config import build_config
from engine.cron.definitions import DefinitionStore
from engine.engine import Engine
from engine.maintenance.pruner import Pruner
from engine.web import serve
from tests.support.scripted import Recorder
from tests.web.conftest import CHROMIUM_ARGS, TOKEN, Controls, web_registry
from tests.web.screenshots import OUT, _embedded_postgres

SSH = {"jobType": "ssh", "data": {"host": "{{dbServer}}", "username": "ops",
                                  "command": "pg_dump game | gzip > /backup/game-$(date +%F).gz"},
       "attempts": 3, "timeout": 300000, "vars": {"dbServer": "db-1.internal"}}
DEFINITIONS = [
    {"name": "nightly-backup", "description": "dump the game DB to /backup", "tags": ["db"],
     "trigger": {"type": "cron", "schedule": "0 2 * * *", "timezone": "Asia/Seoul", "overlap": "skip"}, "job": SSH},
    {"name": "daily-stats", "description": "push yesterday's numbers to analytics", "tags": ["analytics"],
     "trigger": {"type": "cron", "schedule": "0 1 * * *", "timezone": "Asia/Seoul"},
     "job": {"jobType": "http", "data": {"method": "PUT", "url": "https://analytics.example.com/api/stats"}}},
    {"name": "weekly-report", "description": "mail the weekly KPI report", "tags": ["reports"],
     "trigger": {"type": "cron", "schedule": "30 9 * * 1", "timezone": "Europe/Berlin"},
     "job": {"jobType": "mail", "data": {"to": "ops@example.com", "subject": "Weekly KPIs", "text": "see {{url}}"}}},
    {"name": "season-launch", "description": "open season 7 at midnight KST", "tags": ["game"],
     "trigger": {"type": "once", "at": "2026-12-24T00:00:00+09:00"},
     "job": {"jobType": "http", "data": {"method": "POST", "url": "https://game-api.example.com/seasons/7/open"}}},
    {"name": "restart-game-server", "description": "rolling restart, run by hand", "tags": ["game", "ops"],
     "enabled": False, "trigger": {"type": "manual"},
     "job": {"jobType": "ssh", "data": {"host": "{{server}}", "command": "systemctl restart game"}}},
]


async def seed(engine: Engine) -> None:
    definitions = engine.definitions
    assert definitions is not None and engine.store is not None
    for body in DEFINITIONS:
        await definitions.create(body, actor="session:operator")
    schema = engine.store.schema
    now = datetime.now(UTC)
    rows = []
    for day in range(30, 0, -1):
        state = "discarded" if day in (4, 17) else "completed"
        started = now - timedelta(days=day, hours=3)
        seconds = 41 + (day * 7) % 23
        finished = started + timedelta(seconds=seconds)
        errors = json.dumps([{"attempt": 3, "at": finished.isoformat(), "kind": "error",
                              "error": "ssh: exit status 1\npg_dump: error: connection to server failed"}]
                            if state == "discarded" else [])
        rows.append((state, 3 if state == "discarded" else 1, started, finished, errors))
    async with engine.store.pool.acquire() as conn:
        await conn.executemany(
            f'INSERT INTO "{schema}".jobs (queue, kind, args, meta, state, attempt, max_attempts, attempted_at, '
            "completed_at, discarded_at, errors) VALUES ('default', 'ssh', $1::text::jsonb, "
            "'{\"definition\": \"nightly-backup\", \"untallied\": true}', $2, $3, 3, $4, "
            "CASE WHEN $2 = 'completed' THEN $5::timestamptz END, CASE WHEN $2 = 'discarded' THEN $5::timestamptz END, "
            "$6::text::jsonb)",
            [('{"host": "{{dbServer}}", "username": "ops", "command": "pg_dump game"}', *row) for row in rows])
        await conn.execute(f'UPDATE "{schema}".cron_entries SET runs_total = 30, last_run_job_id = '
                           f'(SELECT max(id) FROM "{schema}".jobs), last_run_at = $1 WHERE name = $2',
                           rows[-1][2], "nightly-backup")
    await Pruner(engine.store, engine.config.retention).tally_once()


async def shoot(url: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
        await page.goto(url + "/login")
        await page.fill("input[name=token]", TOKEN)
        await page.click("form.box button")
        await page.goto(url + "/definitions")
        await page.screenshot(path=str(OUT / "definitions.png"), full_page=True)
        await page.goto(url + "/definitions/new?kind=ssh")
        await page.fill("input[name=name]", "rotate-logs")
        await page.fill("input[name='data.host']", "{{server}}")
        await page.fill("input[name='data.port']", "twenty-two")
        await page.select_option("select[name='trigger.type']", "cron")
        await page.fill("input[name='trigger.schedule']", "0 4 * * *")
        await page.fill("input[name='trigger.timezone']", "Asia/Seoul")
        await page.click("button[name=save]")
        await page.wait_for_selector(".field-error")
        await page.wait_for_selector("#trigger-preview li")
        await page.screenshot(path=str(OUT / "definition-form-error.png"), full_page=True)
        await page.goto(url + "/definitions/nightly-backup")
        await page.screenshot(path=str(OUT / "definition-history.png"), full_page=True)
        await browser.close()


async def main() -> None:
    database_url = os.environ.get("JOBENGINE_TEST_DATABASE_URL")
    server: Any = None
    if database_url is None:
        server = _embedded_postgres()
        database_url = server.get_uri()
    try:
        config = build_config({"database_url": database_url, "schema": "definition_screenshots",
                               "dashboard": {"token": TOKEN}})
        conn = await asyncpg.connect(database_url)
        await conn.execute('DROP SCHEMA IF EXISTS "definition_screenshots" CASCADE')
        await conn.close()
        async with Engine(config=config, registry=web_registry(Recorder(), Controls())) as engine:
            await seed(engine)
            async with serve(engine, bind="127.0.0.1:0") as dashboard:
                await shoot(dashboard.url)
        assert isinstance(engine.definitions, DefinitionStore)
    finally:
        if server is not None:
            server.cleanup()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    anyio.run(main)
