"""Shared by the account tests: a team of users with passwords and tokens, logging in as
one, and every route of the app with sample parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from engine.core.accounts import AuditEntry
from engine.db.store import JobStore
from engine.web import users

PASSWORD = "planted-password-Zq81-never-stored"


def setup_entry(action: str, target: str | None = None, /, **details: Any) -> AuditEntry:
    return AuditEntry("test-setup", "admin", action, target, details)


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    password: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def add_member(store: JobStore, name: str, role: str, *, can_view_args: bool = False) -> Member:
    password = f"{PASSWORD}-{name}"
    await users.add_user(store, setup_entry, name, role, can_view_args=can_view_args, password=password)
    token = await users.new_token_for(store, setup_entry, name, "tests")
    return Member(name, role, password, token)


async def team(store: JobStore) -> dict[str, Member]:
    """viewer (args hidden), seer (a viewer who may view args), operator, admin."""
    return {"viewer": await add_member(store, "vera", "viewer"),
            "seer": await add_member(store, "sam", "viewer", can_view_args=True),
            "operator": await add_member(store, "otto", "operator"),
            "admin": await add_member(store, "ada", "admin")}


async def log_in(http: aiohttp.ClientSession, url: str, name: str, password: str) -> str:
    """Log in with the form as a user; returns the page's CSRF token."""
    async with http.post(f"{url}/login", data={"user": name, "token": password, "next": "/"}) as response:
        assert response.status == 200, await response.text()
        page = await response.text()
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, "a logged-in page carries a CSRF token"
    return match.group(1)


def routes(app: web.Application, sample: dict[str, str]) -> list[tuple[str, str, str]]:
    """Every (method, path template, path) the app serves, parameters filled from ``sample``."""
    found = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        template = info.get("path") or info.get("formatter") or info.get("prefix")
        path = re.sub(r"\{(\w+)\}", lambda m: sample[m.group(1)], template)
        found.append((route.method, template, path))
    return found
