"""The dashboard in a real headless Chromium: log in, watch counts move live, filter,
read a failed job's error, retry it, pause a queue, and be refused without a CSRF token."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.support.waiting import wait_until
from tests.web.conftest import TOKEN, XSS, Dashboard


async def _log_in(page: Any, dashboard: Dashboard, target: str = "/") -> None:
    await page.goto(dashboard.url + target)
    await expect(page.locator("form.box h1")).to_contain_text("jobengine")  # the login form (401)
    await page.fill("input[name=token]", TOKEN)
    await page.click("form.box button")
    await expect(page.locator("header.top .role")).to_have_text("operator")
    await expect(page.locator("html[data-js=ready]")).to_have_count(1)  # its controls are wired


def _cell(page: Any, queue: str, state: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] a[data-state="{state}"]')


async def test_log_in_and_watch_counts_change_as_jobs_complete(dashboard: Dashboard, page: Any) -> None:
    await _log_in(page, dashboard)
    jobs = [await dashboard.engine.enqueue("gated", {"gate": f"g{n}"}) for n in range(3)]
    await page.evaluate("window.__noReload = true")
    await expect(_cell(page, "default", "executing")).to_have_text("2")  # concurrency 2
    await expect(_cell(page, "default", "available")).to_have_text("1")
    await expect(_cell(page, "default", "completed")).to_have_text("0")
    for done, job in enumerate(jobs, start=1):
        dashboard.controls.gate(job.args["gate"]).set()
        await expect(_cell(page, "default", "completed")).to_have_text(str(done))
    await expect(_cell(page, "default", "executing")).to_have_text("0")
    await expect(page.locator('[data-count="completed"]')).to_have_text("3")
    assert await page.evaluate("window.__noReload") is True  # updated live, never reloaded


async def test_filter_the_job_list(dashboard: Dashboard, page: Any) -> None:
    await dashboard.engine.pause("default")
    await dashboard.engine.pause("mail")
    for n in range(3):
        await dashboard.engine.enqueue("scripted", {"n": n, "city": "Seoul" if n == 1 else "Busan"}, queue="mail")
    await dashboard.engine.enqueue("gated", {"gate": "never"}, tags=["nightly"])
    await _log_in(page, dashboard, "/jobs")
    await expect(page.locator("table.jobs tbody tr")).to_have_count(4)
    await page.select_option("select[name=queue]", "mail")  # submits on change
    await expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    await page.fill("#filters input[name=q]", "Seoul")
    await page.click("#filters button.primary")
    await expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    await expect(page.locator("table.jobs tbody td.args")).to_contain_text("Seoul")
    await page.goto(dashboard.url + "/jobs")
    await page.fill("input[name=tag]", "nightly")
    await page.click("#filters button.primary")
    await expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    await expect(page.locator("table.jobs td.kind")).to_contain_text("gated")
    assert "tag=nightly" in page.url


async def test_open_a_failed_job_read_its_error_retry_and_see_it_complete(dashboard: Dashboard, page: Any) -> None:
    job = await dashboard.engine.enqueue("flaky", {"key": "billing", "note": XSS})
    await wait_until(lambda: _state(dashboard, job.id, "discarded"))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    await _log_in(page, dashboard, "/jobs?state=discarded")
    await page.click(f'tr[data-job-id="{job.id}"] a')
    await expect(page.locator(".error-message").first).to_have_text("RuntimeError: upstream unavailable for billing")
    await page.click("details:has(.traceback) summary")
    await expect(page.locator(".traceback").first).to_contain_text("Traceback")
    await expect(page.locator('pre[data-field="args"]')).to_contain_text(XSS)  # shown as text, not run
    dashboard.controls.fixed.add("billing")
    await page.click("form[action$='/retry'] button")
    await expect(page.locator(".notice")).to_have_text("Retried 1 job(s).")
    await expect(page.locator('dd[data-field="state"]')).to_have_text("completed")  # live, no reload
    await expect(page.locator('pre[data-field="result"]')).to_contain_text('"fixed": "billing"')
    assert dialogs == []


async def test_pause_a_queue_and_see_nothing_run(dashboard: Dashboard, page: Any) -> None:
    await _log_in(page, dashboard)
    await dashboard.engine.enqueue("scripted", {"action": "ok"})  # makes the queue row appear with work done
    await expect(_cell(page, "default", "completed")).to_have_text("1")
    await page.click('tr[data-queue="default"] form[action$="/pause"] button')
    await expect(page.locator('tr[data-queue="default"] .pill')).to_have_text("paused")
    jobs = [await dashboard.engine.enqueue("scripted", {"action": "ok", "n": n}) for n in range(3)]
    await expect(_cell(page, "default", "available")).to_have_text("3")
    for n in range(3):  # other work pushes updates to the page meanwhile; the paused queue's jobs stay put
        await dashboard.engine.enqueue("scripted", {"action": "ok", "n": n}, queue="mail")
        await expect(_cell(page, "mail", "completed")).to_have_text(str(n + 1))
    await expect(_cell(page, "default", "executing")).to_have_text("0")
    await expect(_cell(page, "default", "completed")).to_have_text("1")
    assert not set(dashboard.recorder.started) & {job.id for job in jobs}
    await page.click('tr[data-queue="default"] form[action$="/resume"] button')
    await expect(_cell(page, "default", "completed")).to_have_text("4")


async def test_an_action_without_csrf_token_is_refused(dashboard: Dashboard, page: Any) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    await _log_in(page, dashboard, f"/jobs/{job.id}")
    status = await page.evaluate(
        f"fetch('/api/jobs/{job.id}/run', {{method: 'POST', credentials: 'same-origin'}}).then(r => r.status)")
    assert status == 403
    # In one script turn, so a live refresh cannot put the tokens back before the click.
    await page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove());"
                        "document.querySelector(\"form[action$='/run'] button\").click()")
    await expect(page.locator(".bad")).to_contain_text("CSRF token missing or invalid")
    assert (await dashboard.engine.get(job.id)).state == "scheduled"  # type: ignore[union-attr]
    await page.go_back()
    await page.reload()
    token = await page.locator("meta[name=csrf-token]").get_attribute("content")
    status = await page.evaluate(
        f"fetch('/api/jobs/{job.id}/run', {{method: 'POST', headers: {{'X-CSRF-Token': '{token}'}}}})"
        ".then(r => r.status)")
    assert status == 200  # the same request with the session's token goes through


def _state(dashboard: Dashboard, job_id: int, state: str) -> Any:
    async def check() -> bool:
        job = await dashboard.engine.get(job_id)
        return job is not None and job.state == state
    return check()
