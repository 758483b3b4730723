"""Definitions under team access: a viewer who may not view args sees every definition's
payload as ``hidden`` (API, pages, runs), and every definition action leaves one audit row
with its actor."""

from __future__ import annotations

from typing import Any

from tests.web.accounts_support import add_member
from tests.web.conftest import Dashboard

PLANT = "planted-7d21c0@player.example"
DEFINITION = {"name": "welcome-mail", "trigger": {"type": "manual"},
              "job": {"jobType": "scripted", "data": {"action": "ok", "email": PLANT}}}


async def _audit(dashboard: Dashboard, action: str) -> list[dict[str, Any]]:
    assert dashboard.engine.store is not None
    return [dict(row) for row in await dashboard.engine.store.audit_list(action=action, limit=50)]


async def test_a_viewer_sees_definition_payloads_hidden_everywhere(dashboard: Dashboard, http) -> None:
    store = dashboard.engine.store
    otto, vera = await add_member(store, "otto", "operator"), await add_member(store, "vera", "viewer")
    async with http.post(dashboard.url + "/api/definitions", headers=otto.bearer, json=DEFINITION) as response:
        assert response.status == 201, await response.text()
    async with http.post(dashboard.url + "/api/definitions/welcome-mail/run", headers=otto.bearer) as response:
        assert response.status == 201, await response.text()
    paths = ["/api/definitions", "/api/definitions/welcome-mail", "/api/definitions/welcome-mail/runs",
             "/definitions", "/definitions/welcome-mail", "/definitions/welcome-mail/edit"]
    for path in paths:
        async with http.get(dashboard.url + path, headers=vera.bearer) as response:
            body = await response.text()
        assert response.status == 200, (path, body[:300])
        assert PLANT not in body and "7d21c0" not in body, path
    async with http.get(dashboard.url + "/api/definitions/welcome-mail", headers=otto.bearer) as response:
        assert PLANT in await response.text()  # an operator sees what the job will carry


async def test_every_definition_action_leaves_an_audit_row_with_its_actor(dashboard: Dashboard, http) -> None:
    otto = await add_member(dashboard.engine.store, "otto", "operator")
    base = dashboard.url + "/api/definitions"
    steps = [("POST", base, DEFINITION), ("PUT", base + "/welcome-mail", {**DEFINITION, "description": "hi"}),
             ("POST", base + "/welcome-mail/disable", None), ("POST", base + "/welcome-mail/enable", None),
             ("POST", base + "/welcome-mail/run", None), ("DELETE", base + "/welcome-mail", None)]
    for method, url, body in steps:
        async with http.request(method, url, headers=otto.bearer, json=body) as response:
            assert response.status in (200, 201), (method, url, await response.text())
    for action in ("create", "update", "disable", "enable", "run", "delete"):
        rows = await _audit(dashboard, f"definition.{action}")
        assert [(r["actor"], r["target"]) for r in rows] == [("otto", "definition:welcome-mail")], action
