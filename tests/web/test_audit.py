"""The audit log: one row per state-changing action from the dashboard, the API and the
CLI, with the right actor; its listing and filters; its retention; and no password or
token in clear anywhere in the database or the logs."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from engine.cli.cron import cron_store
from engine.core.config import RetentionConfig
from engine.cron.schedule import CronEntry
from engine.maintenance.pruner import Pruner
from tests.web.accounts_support import PASSWORD, add_member, log_in, setup_entry
from tests.web.conftest import Dashboard

ROOT = Path(__file__).resolve().parents[2]


async def _rows(dashboard: Dashboard, **filters: Any) -> list[dict[str, Any]]:
    """Audit rows, newest first, without those the tests' own setup wrote."""
    rows = await dashboard.engine.store.audit_list(**filters, limit=1000)
    return [row for row in rows if row["actor"] != "test-setup"]


async def test_every_action_kind_leaves_one_row_with_its_actor(dashboard: Dashboard, http) -> None:
    store, url = dashboard.engine.store, dashboard.url
    otto, ada = await add_member(store, "otto", "operator"), await add_member(store, "ada", "admin")
    await cron_store(dashboard.engine).add(CronEntry("nightly", "0 3 * * *", "UTC",
                                                     {"jobType": "scripted", "data": {"action": "ok"}}))
    jobs = [await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600) for _ in range(6)]
    calls: list[tuple[str, dict[str, str], Any]] = [
        (f"/api/jobs/{jobs[0].id}/run", otto.bearer, None), (f"/api/jobs/{jobs[1].id}/cancel", otto.bearer, None),
        (f"/api/jobs/{jobs[1].id}/retry", otto.bearer, None), (f"/api/jobs/{jobs[2].id}/delete", otto.bearer, None),
        ("/api/jobs", otto.bearer, {"jobType": "scripted", "data": {"action": "ok"}, "delay": 3_600_000}),
        ("/api/jobs/bulk", otto.bearer, {"action": "cancel", "ids": [jobs[3].id]}),
        ("/api/jobs/bulk", otto.bearer, {"action": "delete", "filter": {"state": "scheduled", "kind": "scripted"}}),
        ("/api/queues/mail/pause", otto.bearer, None), ("/api/queues/mail/resume", otto.bearer, None),
        ("/api/queues/mail/scale", otto.bearer, {"concurrency": 3}),
        ("/api/cron/nightly/disable", otto.bearer, None), ("/api/cron/nightly/enable", otto.bearer, None),
        ("/api/cron/nightly/run", otto.bearer, None),
        ("/api/users", ada.bearer, {"name": "vera", "role": "viewer", "password": "pw-vera"}),
        ("/api/users/vera/update", ada.bearer, {"can_view_args": True}),
        ("/api/users/vera/password", ada.bearer, {"password": "pw-vera-2"}),
        ("/api/users/vera/token", ada.bearer, {"name": "ci"}), ("/api/users/vera/revoke", ada.bearer, None),
        ("/api/users/vera/disable", ada.bearer, None), ("/api/users/vera/enable", ada.bearer, None),
        ("/api/users/vera/remove", ada.bearer, None),
    ]
    for path, headers, body in calls:
        async with http.post(url + path, headers=headers, json=body) as response:
            assert response.status in (200, 201), (path, await response.text())
    async with http.post(url + "/login", data={"user": "otto", "token": "wrong"}) as response:
        assert response.status == 401
    csrf = await log_in(http, url, "otto", otto.password)
    async with http.post(url + "/queues/default/pause", data={"csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with http.post(url + "/logout", data={"csrf_token": csrf}, allow_redirects=False) as response:
        assert response.status == 303

    expected = {
        "job.run": ("otto", f"job:{jobs[0].id}"), "job.cancel": ("otto", f"job:{jobs[1].id}"),
        "job.retry": ("otto", f"job:{jobs[1].id}"), "job.delete": ("otto", f"job:{jobs[2].id}"),
        "job.enqueue": ("otto", None), "queue.resume": ("otto", "queue:mail"),
        "queue.scale": ("otto", "queue:mail"), "cron.disable": ("otto", "cron:nightly"),
        "cron.enable": ("otto", "cron:nightly"), "cron.run": ("otto", "cron:nightly"),
        "user.add": ("ada", "user:vera"), "user.passwd": ("ada", "user:vera"), "token.add": ("ada", "user:vera"),
        "token.revoke": ("ada", "user:vera"), "user.remove": ("ada", "user:vera"),
        "login.failed": ("otto", None), "login": ("otto", "user:otto"), "logout": ("otto", None),
    }
    for action, (actor, target) in expected.items():
        rows = await _rows(dashboard, action=action)
        assert len(rows) == 1, (action, rows)
        assert rows[0]["actor"] == actor, action
        if target is not None:
            assert rows[0]["target"] == target, action
    assert len(await _rows(dashboard, action="user.update")) == 3  # the flag, disable, enable
    pauses = await _rows(dashboard, action="queue.pause")
    assert [(r["target"], r["details"]["via"]) for r in pauses] == [("queue:default", "session"),
                                                                     ("queue:mail", "bearer")]
    by_ids, by_filter = sorted(await _rows(dashboard, action="job.bulk"), key=lambda r: r["id"])
    assert by_ids["details"] == {"via": "bearer", "action": "cancel", "ids": [jobs[3].id], "selected": 1, "count": 1}
    assert by_filter["details"]["filter"] == {"state": "scheduled", "kind": "scripted"}
    assert by_filter["details"]["count"] == by_filter["details"]["selected"] >= 2
    assert (await _rows(dashboard, action="queue.scale"))[0]["details"]["concurrency"] == 3


async def test_the_audit_api_filters_and_pages_newest_first(dashboard: Dashboard, http) -> None:
    ada = await add_member(dashboard.engine.store, "ada", "admin")
    for name in ("q1", "q2", "q3"):
        async with http.post(f"{dashboard.url}/api/queues/{name}/pause", headers=ada.bearer) as response:
            assert response.status == 200
    async def get(query: str) -> dict[str, Any]:
        async with http.get(f"{dashboard.url}/api/audit?{query}", headers=ada.bearer) as response:
            assert response.status == 200, await response.text()
            return await response.json()  # type: ignore[no-any-return]
    pauses = (await get("action=queue.pause"))["entries"]
    assert [e["target"] for e in pauses] == ["queue:q3", "queue:q2", "queue:q1"]
    assert [e["target"] for e in (await get("target=queue:q2"))["entries"]] == ["queue:q2"]
    assert {e["actor"] for e in (await get("actor=ada"))["entries"]} == {"ada"}
    assert (await get("since=1h"))["entries"] and not (await get("since=2999-01-01T00:00:00"))["entries"]
    async with http.get(f"{dashboard.url}/api/audit?since=yesterday", headers=ada.bearer) as response:
        assert response.status == 400 and "since" in (await response.json())["error"]
    async with http.get(f"{dashboard.url}/audit?action=queue.pause", headers=ada.bearer) as response:
        page = await response.text()
    assert page.count('data-audit="') == 3 and "queue:q1" in page


async def test_the_pruner_deletes_audit_rows_past_their_retention_and_expired_sessions(dashboard: Dashboard) -> None:
    store = dashboard.engine.store
    await store.audit(setup_entry("old.thing"))
    await store.audit(setup_entry("new.thing"))
    async with store.pool.acquire() as conn:
        await conn.execute(f"UPDATE \"{store.schema}\".audit_log SET at = now() - interval '400 days' "
                           "WHERE action = 'old.thing'")
    await store.session_add(b"e" * 32, None, "viewer", "dashboard.readonly_token", -1.0)  # expired
    await store.session_add(b"l" * 32, None, "viewer", "dashboard.readonly_token", 3600.0)
    pruner = Pruner(store, RetentionConfig(audit=365 * 86400.0, batch_size=1))
    # The dashboard's own engine prunes too: whichever pass comes first deletes the old row.
    assert await pruner.prune_audit_once() in (0, 1)
    assert [r["action"] for r in await store.audit_list()] == ["new.thing"]
    assert await store.session_get(b"e" * 32) is None and await store.session_get(b"l" * 32) is not None
    async with store.pool.acquire() as conn:
        assert await conn.fetchval(f'SELECT count(*) FROM "{store.schema}".sessions') == 1


def _cli(pg_url: str, schema: str, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "jobengine.toml"
    config.write_text(f'database_url = "{pg_url}"\nschema = "{schema}"\n[dashboard]\nenabled = false\n')
    env = {**os.environ, "JOBENGINE_LOGGING__LEVEL": "info"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args, "--config", str(config)], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


async def test_the_cli_manages_users_and_audits_as_cli_user(dashboard: Dashboard, http, pg_url: str,
                                                             tmp_path: Path) -> None:
    schema, url = dashboard.engine.store.schema, dashboard.url
    added = _cli(pg_url, schema, tmp_path, "users", "add", "ada", "--role", "admin", stdin=f"{PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    made = _cli(pg_url, schema, tmp_path, "users", "token", "ada", "--name", "ci", "--json")
    token = json.loads(made.stdout)["token"]
    async with http.get(url + "/api/users", headers={"Authorization": f"Bearer {token}"}) as response:
        listed = (await response.json())["users"]
    assert [(u["name"], u["role"], u["tokens"]) for u in listed] == [("ada", "admin", 1)]
    await log_in(http, url, "ada", PASSWORD)
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    assert _cli(pg_url, schema, tmp_path, "cancel", str(job.id)).returncode == 0
    refusals = {
        ("users", "add", "eve", "--role", "viewer"): ("", "password: must not be empty"),
        ("users", "remove", "ada"): ("", "last enabled admin"),
    }
    for args, (stdin, message) in refusals.items():
        done = _cli(pg_url, schema, tmp_path, *args, stdin=stdin)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
    assert _cli(pg_url, schema, tmp_path, "users", "revoke", "ada").returncode == 0
    listing = _cli(pg_url, schema, tmp_path, "users", "list")
    assert "ada" in listing.stdout and "admin" in listing.stdout
    actor = f"cli:{getpass.getuser()}"
    rows = await _rows(dashboard, actor=actor)
    assert [r["action"] for r in reversed(rows)] == ["user.add", "token.add", "job.cancel", "token.revoke"]
    assert rows[1]["target"] == f"job:{job.id}" and {r["role"] for r in rows} == {"cli"}
    # The password and the token never reach the database or a log in clear.
    outputs = added.stderr + added.stdout + made.stderr + listing.stdout + listing.stderr
    assert PASSWORD not in outputs and token not in made.stderr
    await _assert_nowhere_in_the_database(pg_url, schema, [PASSWORD, token, token[3:]])


async def test_passwords_and_tokens_never_reach_the_database_or_logs(dashboard: Dashboard, http, pg_url: str,
                                                                     capfd) -> None:
    member = await add_member(dashboard.engine.store, "otto", "operator")
    await log_in(http, dashboard.url, member.name, member.password)
    async with http.post(dashboard.url + "/login", data={"user": "otto", "token": member.password + "x"}) as r:
        assert r.status == 401
    async with http.get(dashboard.url + "/api/queues", headers=member.bearer) as response:
        assert response.status == 200
    cookie = {c.key: c.value for c in http.cookie_jar}["jobengine_session"]
    captured = capfd.readouterr()
    for value in (member.password, member.token, cookie):
        assert value not in captured.out + captured.err
    await _assert_nowhere_in_the_database(pg_url, dashboard.engine.store.schema,
                                          [member.password, member.token, member.token[3:], cookie])


async def _assert_nowhere_in_the_database(pg_url: str, schema: str, planted: list[str]) -> None:
    """Every row of every table of the schema, as text, holds none of ``planted``."""
    conn = await asyncpg.connect(pg_url)
    try:
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1",
                                                           schema)]
        assert {"users", "api_tokens", "sessions", "audit_log"} <= set(tables)
        for table in tables:
            for record in await conn.fetch(f'SELECT t::text AS row FROM "{schema}"."{table}" t'):
                for value in planted:
                    assert value not in record["row"], (table, value[:6])
        hashes = await conn.fetch(f'SELECT password_hash FROM "{schema}".users')
        assert hashes and all(h["password_hash"].startswith("$argon2id$") for h in hashes)
    finally:
        await conn.close()
