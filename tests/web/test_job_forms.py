"""One-off jobs from the dashboard in real Chromium: New job with a field error beside its
input, Edit of a scheduled job that then runs with the new args, Duplicate of any job, and
an edit refused once the job has started."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from engine.testing import wait_for_job
from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard
from tests.web.test_dashboard_e2e import _log_in


async def test_new_job_from_the_form_shows_field_errors_then_enqueues(dashboard: Dashboard, page: Any) -> None:
    await _log_in(page, dashboard, "/jobs")
    await page.click("text=New job")
    await page.select_option("select[name=kind]", "log")
    await page.click("button[name=switch]")
    await page.select_option("select[name='data.level']", "info")
    await page.click("button[name=save]")  # no message: the log kind requires one
    await expect(page.locator('.field-error[data-field="job.data.message"]')).to_be_visible()
    await expect(page.locator(".form-errors")).to_contain_text("Nothing was enqueued")
    assert await dashboard.engine.list_jobs(kind="log") == []

    await page.fill("textarea[name='data.message']", "hello {{job.id}}")
    await page.fill("input[name='job.priority']", "7")
    await page.click("button[name=save]")
    await expect(page).to_have_url(re.compile(r"done=enqueued"))
    (job,) = await dashboard.engine.list_jobs(kind="log")
    assert (job.args["message"], job.priority) == ("hello {{job.id}}", 7)


async def test_edit_a_scheduled_job_and_it_runs_with_the_new_args(dashboard: Dashboard, page: Any) -> None:
    job = await dashboard.engine.enqueue("scripted", {"result": "old"}, delay=3600)
    await _log_in(page, dashboard, f"/jobs/{job.id}")
    await page.click("a:text('Edit')")
    await page.fill("textarea[name=data]", '{"result": "new"}')
    await page.fill("input[name=scheduledAt]", "2000-01-01T00:00:00+00:00")  # due at once
    await page.click("button[name=save]")
    await expect(page).to_have_url(re.compile(r"done=edited"))
    done = await wait_for_job(dashboard.engine, job.id, timeout=20)
    assert (done.state, done.result) == ("completed", "new")

    await page.goto(f"{dashboard.url}/jobs/{job.id}/edit")  # finished: nothing to edit any more
    await expect(page.locator("body")).to_contain_text("only scheduled, available or retryable jobs")


async def test_duplicate_any_job_into_a_new_one(dashboard: Dashboard, page: Any) -> None:
    original = await dashboard.engine.enqueue("scripted", {"result": "again"}, tags=["copy-me"])
    await wait_until(lambda: wait_for_job(dashboard.engine, original.id, timeout=20), what="the original to finish")
    await _log_in(page, dashboard, f"/jobs/{original.id}")
    await page.click("a:text('Duplicate')")
    await expect(page.locator("input[name=tags]")).to_have_value("copy-me")
    await page.click("button[name=save]")
    await expect(page).to_have_url(re.compile(r"done=enqueued"))
    copies = [j for j in await dashboard.engine.list_jobs(kind="scripted") if j.id != original.id]
    assert [(j.args, j.tags) for j in copies] == [({"result": "again"}, ["copy-me"])]
