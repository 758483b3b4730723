"""Finding jobs (SPEC section 12) through the dashboard: the API's ``q``, the search box in
every page's header (in real Chromium), and errors that name the bad term."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.web.conftest import Dashboard
from tests.web.test_dashboard_e2e import _log_in


async def _jobs(dashboard: Dashboard) -> dict[str, int]:
    engine = dashboard.engine
    ops = await engine.enqueue("scripted", {"action": "ok", "to": "ops@example.com"}, delay=3600, queue="mail")
    other = await engine.enqueue("scripted", {"action": "ok", "to": "dev@example.com"}, delay=3600, queue="mail")
    nested = await engine.enqueue("scripted", {"action": "ok", "data": {"userId": 7}}, delay=3600, tags=["vip"])
    return {"ops": ops.id, "other": other.id, "nested": nested.id}


async def _ids(http: Any, dashboard: Dashboard, q: str) -> tuple[int, Any]:
    async with http.get(f"{dashboard.url}/api/jobs", params={"q": q}, headers=dashboard.auth) as response:
        body = await response.json()
        return response.status, [job["id"] for job in body["jobs"]] if response.status == 200 else body


async def test_the_api_finds_jobs_by_each_kind_of_term(dashboard: Dashboard, http: Any) -> None:
    ids = await _jobs(dashboard)
    assert await _ids(http, dashboard, "args.to:ops@example.com") == (200, [ids["ops"]])
    assert await _ids(http, dashboard, f"id:{ids['other']}") == (200, [ids["other"]])
    assert await _ids(http, dashboard, "args.data.userId:7 tag:vip state:scheduled") == (200, [ids["nested"]])
    assert await _ids(http, dashboard, "queue:mail example.com") == (200, [ids["other"], ids["ops"]])


async def test_the_api_answers_a_malformed_query_with_a_400_naming_the_term(dashboard: Dashboard, http: Any) -> None:
    status, body = await _ids(http, dashboard, "queue:mail colour:red")
    assert status == 400 and "colour:red" in body["error"] and "unknown qualifier" in body["error"], body
    assert await _ids(http, dashboard, "definition:nightly") == (200, [])  # a definition that made no job
    async with http.get(f"{dashboard.url}/api/jobs", params={"q": "kind:mail", "kind": "http"},
                        headers=dashboard.auth) as response:
        assert response.status == 400 and "the query says 'mail'" in (await response.json())["error"]


async def test_the_header_box_jumps_to_a_job_by_id_from_any_page(dashboard: Dashboard, page: Any) -> None:
    ids = await _jobs(dashboard)
    await _log_in(page, dashboard, "/cron")
    await page.fill("header.top input[name=q]", str(ids["other"]))
    await page.press("header.top input[name=q]", "Enter")
    await expect(page).to_have_url(f"{dashboard.url}/jobs/{ids['other']}")
    await expect(page.locator("main")).to_contain_text("dev@example.com")
    await page.fill("header.top input[name=q]", f"id:{ids['ops']}")
    await page.press("header.top input[name=q]", "Enter")
    await expect(page).to_have_url(f"{dashboard.url}/jobs/{ids['ops']}")


async def test_the_header_box_finds_a_job_by_an_args_path(dashboard: Dashboard, page: Any) -> None:
    ids = await _jobs(dashboard)
    await _log_in(page, dashboard)
    await page.fill("header.top input[name=q]", "args.to:ops@example.com")
    await page.press("header.top input[name=q]", "Enter")
    rows = page.locator("table.jobs tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-job-id", str(ids["ops"]))
    await expect(page.locator("#job-query")).to_have_value("args.to:ops@example.com")
    await expect(page.locator(".bound")).to_have_count(0)  # the GIN index answers: no scan bound


async def test_the_job_list_shows_a_query_error_and_the_scan_bound(dashboard: Dashboard, page: Any) -> None:
    await _jobs(dashboard)
    await _log_in(page, dashboard, "/jobs")
    await page.fill("#job-query", "stat:completed")
    await page.press("#job-query", "Enter")
    await expect(page.locator(".query-error")).to_contain_text("term 'stat:completed'")
    await expect(page.locator(".query-error")).to_contain_text("did you mean state:?")
    await expect(page.locator("#job-query")).to_have_value("stat:completed")
    await page.fill("#job-query", "dev@example")
    await page.press("#job-query", "Enter")
    await expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    await expect(page.locator(".bound")).to_contain_text("newest 50,000 jobs")
