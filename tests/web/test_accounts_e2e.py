"""Named accounts in a real headless Chromium: each role logs in with its password and
walks the pages; viewers see args as hidden and no buttons; admins manage users on the
Users page and read what they did on the Audit page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.web.accounts_support import Member, add_member
from tests.web.conftest import Dashboard

PLANT = "planted-e2e-7a3b@player.example"


async def _log_in(page: Any, dashboard: Dashboard, member: Member) -> None:
    await page.goto(dashboard.url + "/")
    await page.fill("input[name=user]", member.name)
    await page.fill("input[name=token]", member.password)
    await page.click("form.box button")
    await expect(page.locator("header.top .role")).to_have_text(member.role)
    await expect(page.locator("header.top .who-name")).to_have_text(member.name)
    await expect(page.locator("html[data-js=ready]")).to_have_count(1)  # its controls are wired


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_each_role_logs_in_and_walks_the_pages(dashboard: Dashboard, page: Any, role: str) -> None:
    member = await add_member(dashboard.engine.store, f"{role}-1", role)
    job = await dashboard.engine.enqueue("scripted", {"action": "ok", "email": PLANT}, delay=3600)
    await _log_in(page, dashboard, member)
    nav = page.locator("header.top nav a")
    admin_nav = ["Audit", "Users"] if role == "admin" else []
    expected_nav = ["Overview", "Jobs", "Definitions", "Cron", "Nodes", "Alerts", *admin_nav]
    await expect(nav).to_have_text(expected_nav)
    for path in ("/", "/jobs", "/cron", "/alerts"):
        response = await page.goto(dashboard.url + path)
        assert response.status == 200, path
    await page.goto(f"{dashboard.url}/jobs/{job.id}")
    args = page.locator("[data-field=args]")
    if role == "viewer":
        await expect(args).to_have_text('"hidden"')
        await expect(page.locator("button", has_text="Retry")).to_have_count(0)
        assert PLANT not in await page.content()
    else:
        await expect(args).to_contain_text(PLANT)
        await expect(page.locator("button", has_text="Retry")).to_have_count(1)
    for path in ("/users", "/audit"):
        response = await page.goto(dashboard.url + path)
        assert response.status == (200 if role == "admin" else 403), path
    await page.goto(dashboard.url + "/")
    await page.click("header.top button:has-text('Log out')")
    await expect(page.locator("form.box h1")).to_contain_text("jobengine")
    response = await page.goto(dashboard.url + "/jobs")
    assert response.status == 401


async def test_an_admin_manages_users_and_reads_the_audit_log(dashboard: Dashboard, page: Any) -> None:
    admin = await add_member(dashboard.engine.store, "ada", "admin")
    await _log_in(page, dashboard, admin)
    await page.goto(dashboard.url + "/users")
    form = page.locator("#add-user")
    await form.locator("input[name=name]").fill("vera")
    await form.locator("select[name=role]").select_option("viewer")
    await form.locator("input[name=password]").fill("vera-password-123")
    await form.locator("button").click()
    await expect(page.locator(".notice")).to_have_text("Added the user.")
    row = page.locator('tr[data-user="vera"]')
    await expect(row).to_contain_text("enabled")
    await row.locator("button", has_text="New token").click()
    token = await page.locator("#new-token [data-field=token]").inner_text()
    assert token.startswith("je_")
    await page.goto(dashboard.url + "/users")
    assert token not in await page.content()  # shown once only
    page.on("dialog", lambda dialog: dialog.accept())
    await page.locator('tr[data-user="ada"] button', has_text="Remove").click()
    await expect(page.locator(".bad")).to_contain_text("last enabled admin")
    await page.goto(dashboard.url + "/users")
    await page.locator('tr[data-user="vera"] button', has_text="Disable").click()
    await expect(page.locator('tr[data-user="vera"]')).to_contain_text("disabled")
    await page.goto(dashboard.url + "/audit?actor=ada")
    rows = page.locator("tr[data-audit]")
    await expect(rows.first).to_contain_text("user.update")
    actions = await page.locator("tr[data-audit] td:nth-child(4)").all_inner_texts()
    assert actions == ["user.update", "token.add", "user.add", "login"]
