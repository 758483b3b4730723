"""The Definitions pages in a real headless Chromium: create an SSH definition with a
placeholder through the form generated from the kind's schema, see a field error, save,
run it now and watch the run complete in its history against a real asyncssh server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from playwright.async_api import expect

from engine.engine import Engine
from engine.web import serve
from tests.handlers import conftest as handler_fixtures
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until
from tests.web.conftest import TOKEN, Controls, Dashboard, web_registry
from tests.web.test_dashboard_e2e import _log_in

ssh_peer = handler_fixtures.ssh_peer  # the real asyncssh server of the handler tests


@pytest_asyncio.fixture
async def ssh_dashboard(make_config: Any, ssh_peer: handler_fixtures.SshPeer) -> AsyncIterator[Dashboard]:
    """A processing engine that can reach the test SSH server, with its dashboard."""
    recorder, controls = Recorder(), Controls()
    config = make_config(queues={"default": {"concurrency": 2}}, poll_interval=0.2, ssh=ssh_peer.settings(),
                         dashboard={"token": TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=web_registry(recorder, controls))
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, controls, recorder, server)
    finally:
        await engine.stop(grace=1)


async def test_create_an_ssh_definition_in_the_form_and_run_it_now(
        ssh_dashboard: Dashboard, ssh_peer: handler_fixtures.SshPeer, page: Any) -> None:
    dashboard = ssh_dashboard
    await _log_in(page, dashboard, "/definitions")
    await expect(page.locator("p.empty")).to_contain_text("No definitions")
    await page.click("text=New definition")
    await page.select_option("select[name=kind]", "ssh")
    await page.click("button[name=switch]")
    # the form is generated from SshArgs: required fields are marked, port is a number input
    await expect(page.locator('[data-input="command"] .req')).to_have_count(1)
    await expect(page.locator('[data-input="port"] input')).to_have_attribute("inputmode", "numeric")
    await page.fill("input[name=name]", "restart-game")
    await page.fill("input[name='data.host']", "{{server}}")
    await page.fill("input[name='data.port']", "not-a-port")
    await page.fill("input[name='data.username']", "jobs")
    await page.fill("textarea[name='data.command']", "echo restarted {{server}}")
    await page.fill("input[name=tags]", "game, ops")
    await page.click("button[name=save]")
    error = page.locator('.field-error[data-field="job.data.port"]')
    await expect(error).to_contain_text("integer")
    await expect(page.locator(".form-errors")).to_contain_text("Nothing was saved")
    assert await dashboard.engine.definitions.all() == []  # type: ignore[union-attr]
    await expect(page.locator("input[name='data.host']")).to_have_value("{{server}}")  # kept as typed

    await page.fill("input[name='data.port']", str(ssh_peer.port))
    await page.click("button[name=save]")
    await expect(page.locator(".notice")).to_have_text("Saved the definition.")
    await expect(page.locator("h1")).to_contain_text("restart-game")
    await expect(page.locator("pre.document")).to_contain_text('"host": "{{server}}"')

    await page.fill(".run-now input[name=vars]", "{not json")
    await page.click(".run-now button")
    await expect(page.get_by_role("alert")).to_contain_text("vars: not valid JSON")
    await page.go_back()
    await page.fill(".run-now input[name=vars]", '{"server": "127.0.0.1"}')
    await page.click(".run-now button")
    await expect(page.locator(".notice")).to_contain_text("Inserted a run: job #")
    row = page.locator("table.runs tbody tr").first
    await expect(row).to_be_visible()
    definitions = dashboard.engine.definitions
    assert definitions is not None

    async def finished() -> Any:
        (run,) = await definitions.runs("restart-game")
        return run if run.state in ("completed", "discarded", "retryable") else None

    run = await wait_until(finished, timeout=20)
    await page.reload()  # the history is server-rendered
    await expect(row.locator(".badge")).to_have_text("completed")
    assert "restarted 127.0.0.1" in str(run.result)
    await expect(row.locator("td.num").nth(1)).to_contain_text(" s")  # its duration

    await page.goto(dashboard.url + "/definitions?tag=game")
    await expect(page.locator('tr[data-definition="restart-game"]')).to_contain_text("Manual")
    await page.goto(dashboard.url + "/definitions?enabled=no")
    await expect(page.locator("p.empty")).to_contain_text("match the filter")


async def test_a_cron_definition_shows_its_trigger_in_words_and_next_runs_and_is_deleted(
        ssh_dashboard: Dashboard, page: Any) -> None:
    dashboard = ssh_dashboard
    await _log_in(page, dashboard, "/definitions/new?kind=log")
    await page.fill("input[name=name]", "nightly-stats")
    await page.fill("textarea[name='data.message']", "stats for {{day}}")
    await page.select_option("select[name='data.level']", "warn")
    await page.select_option("select[name='trigger.type']", "cron")
    await page.fill("input[name='trigger.schedule']", "0 2 * * *")
    await page.fill("input[name='trigger.timezone']", "Asia/Seoul")
    preview = page.locator("#trigger-preview")  # live, as the operator types
    await expect(preview.locator("li")).to_have_count(5)
    await expect(preview.locator("li").first).to_contain_text("02:00:00 KST")
    await expect(preview.locator(".preview-words")).to_have_text("At 02:00")
    await page.fill("input[name='trigger.schedule']", "0 25 * * *")
    await expect(preview.locator(".field-error")).to_contain_text("trigger.schedule")
    await page.fill("input[name='trigger.schedule']", "0 2 * * *")
    await expect(preview.locator("li")).to_have_count(5)
    await page.click("button[name=save]")
    await expect(page.locator(".trigger-words")).to_have_text("At 02:00")
    await expect(page.locator(".next-runs li")).to_have_count(5)
    await expect(page.locator(".next-runs li").first).to_contain_text("02:00:00 KST")

    await page.click("text=Edit")
    await page.fill("input[name='trigger.schedule']", "30 4 * * 1")
    await page.click("button[name=save]")
    await expect(page.locator(".trigger-words")).to_contain_text("At 04:30, only on Monday")
    await expect(page.locator(".next-runs li").first).to_contain_text("04:30:00 KST")

    await page.click("text=Duplicate")
    await expect(page.locator("input[name=name]")).to_have_value("nightly-stats-copy")
    await expect(page.locator("textarea[name='data.message']")).to_have_value("stats for {{day}}")
    await page.go_back()
    assert (await page.request.get(dashboard.url + "/definitions/missing/edit")).status == 404
    await page.click("button:has-text('Disable')")
    await expect(page.locator(".next-runs")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("button:has-text('Delete')")
    await expect(page.locator(".notice")).to_contain_text("Deleted the definition")
    assert await dashboard.engine.definitions.all() == []  # type: ignore[union-attr]
