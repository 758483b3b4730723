"""Named accounts: every route for every role, args hidden from viewers, sessions that end
everywhere, API tokens, single sign-on from trusted proxies only, and the login throttle."""

from __future__ import annotations

import aiohttp
import pytest

from engine.core.accounts import Role
from engine.db.account_rows import UserChange
from engine.engine import Engine
from engine.web import serve
from engine.web.users import add_user, change_user, remove_user, revoke_tokens, set_password
from tests.support.waiting import wait_until
from tests.web.accounts_support import Member, add_member, log_in, routes, setup_entry, team
from tests.web.conftest import READONLY_TOKEN, TOKEN, Dashboard

PLANT = "planted-arg-4f9c1e@player.example"
ADMIN_PREFIXES = ("/users", "/audit", "/api/users", "/api/audit")


def needed_role(method: str, template: str) -> Role:
    if template.startswith(ADMIN_PREFIXES):
        return Role.ADMIN
    if method not in ("GET", "HEAD") and template != "/logout":  # POST, PUT, PATCH, DELETE all act
        return Role.OPERATOR
    return Role.VIEWER


async def test_every_route_is_allowed_or_refused_for_each_role_never_an_error(dashboard: Dashboard, http) -> None:
    members = await team(dashboard.engine.store)
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    sample = {"job_id": str(job.id), "action": "retry", "name": "default", "filename": "app.css"}
    table = [r for r in routes(dashboard.server.app, sample) if r[1] not in ("/login", "/healthz")]
    assert len(table) >= 30 and ("GET", "/api/audit", "/api/audit") in table
    callers = {**{m.role if k != "seer" else "viewer": m.bearer for k, m in members.items()},
               "operator-token": {"Authorization": f"Bearer {TOKEN}"},
               "readonly-token": {"Authorization": f"Bearer {READONLY_TOKEN}"}}
    roles = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN,
             "operator-token": Role.OPERATOR, "readonly-token": Role.VIEWER}
    seen = []
    for caller, headers in callers.items():
        for method, template, path in table:
            if template == "/users/{name}/{action}" or template == "/api/users/{name}/{action}":
                path = path.replace("/default/retry", "/nobody/disable")  # never lock a caller out mid-walk
            async with http.request(method, dashboard.url + path, headers=headers, json={},
                                    allow_redirects=False) as response:
                status = response.status
            allowed = roles[caller].allows(needed_role(method, template))
            assert status < 500, (caller, method, path, status)
            if allowed:
                assert status not in (401, 403), (caller, method, path, status)
            else:
                assert status == 403, (caller, method, path, status)
            seen.append((caller, allowed))
    assert {allowed for _, allowed in seen} == {True, False}


async def test_a_viewer_without_the_flag_never_sees_a_planted_arg(dashboard: Dashboard, http) -> None:
    members = await team(dashboard.engine.store)
    failed = await dashboard.engine.enqueue("scripted", {"action": "raise", "message": f"no inbox {PLANT}",
                                                         "email": PLANT}, max_attempts=1)
    done = await dashboard.engine.enqueue("scripted", {"action": "ok", "result": {"sent_to": PLANT}})
    await dashboard.engine.enqueue("scripted", {"action": "ok", "email": PLANT}, delay=3600,
                                   on_success={"jobType": "log", "data": {"message": PLANT}})

    async def finished() -> bool:
        jobs = [await dashboard.engine.get(failed.id), await dashboard.engine.get(done.id)]
        return [j.state for j in jobs if j] == ["discarded", "completed"]
    await wait_until(finished)
    sample = {"job_id": str(failed.id), "action": "retry", "name": "default", "filename": "app.css"}
    # /events streams change topics (never job data) and does not end: its body is not read here
    pages = [path for method, template, path in routes(dashboard.server.app, sample)
             if method == "GET" and template != "/events"]
    pages += [f"/jobs/{done.id}", f"/api/jobs/{done.id}", f"/partials/jobs/{done.id}", "/jobs?state=discarded"]
    for caller in (members["viewer"].bearer, {"Authorization": f"Bearer {READONLY_TOKEN}"}):
        for path in pages:
            async with http.get(dashboard.url + path, headers=caller) as response:
                body = await response.text()
            assert response.status < 500, path
            assert PLANT not in body and "4f9c1e" not in body, path
        async with http.get(f"{dashboard.url}/api/jobs?q=4f9c1e", headers=caller) as response:
            assert response.status == 403 and "args" in (await response.json())["error"]
    async with http.get(f"{dashboard.url}/api/jobs/{failed.id}", headers=members["viewer"].bearer) as response:
        job = (await response.json())["job"]
    assert job["args"] == job["errors"] == job["error"] == "hidden" and job["document"]["data"] == "hidden"
    for member in (members["seer"], members["operator"]):  # the flag, or a role that acts, shows them
        async with http.get(f"{dashboard.url}/api/jobs/{failed.id}", headers=member.bearer) as response:
            assert PLANT in await response.text()
        async with http.get(f"{dashboard.url}/api/jobs?q=4f9c1e", headers=member.bearer) as response:
            assert len((await response.json())["jobs"]) == 3


async def test_logout_ends_the_session_on_every_node_and_after_a_restart(dashboard: Dashboard, http) -> None:
    otto = await add_member(dashboard.engine.store, "otto", "operator")
    await log_in(http, dashboard.url, otto.name, otto.password)
    cookie = {c.key: c.value for c in http.cookie_jar}["jobengine_session"]
    # A second node on the same database (a new engine and server: a restarted one is no
    # different) honours the cookie ...
    node = Engine(config=dashboard.engine.config)
    async with node, serve(node, bind="127.0.0.1:0") as other, aiohttp.ClientSession() as bare:
        headers = {"Cookie": f"jobengine_session={cookie}"}
        async with bare.get(other.url + "/api/queues", headers=headers) as response:
            assert response.status == 200
        async with http.get(dashboard.url + "/") as response:
            csrf = (await response.text()).split('name="csrf-token" content="')[1].split('"')[0]
        async with http.post(dashboard.url + "/logout", data={"csrf_token": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        # ... and after logging out on the first, no node does.
        async with bare.get(other.url + "/api/queues", headers=headers) as response:
            assert response.status == 401
        async with bare.get(dashboard.url + "/api/queues", headers=headers) as response:
            assert response.status == 401


@pytest.mark.parametrize("change", ["passwd", "disable", "remove", "role"])
async def test_changing_a_user_ends_its_sessions(dashboard: Dashboard, http, change: str) -> None:
    store = dashboard.engine.store
    await add_member(store, "ada", "admin")
    otto = await add_member(store, "otto", "operator")
    await log_in(http, dashboard.url, otto.name, otto.password)
    async with http.get(dashboard.url + "/api/queues") as response:
        assert response.status == 200
    if change == "passwd":
        await set_password(store, setup_entry, "otto", "a new password")
    elif change == "disable":
        await change_user(store, setup_entry, "otto", UserChange(disabled=True))
    elif change == "remove":
        await remove_user(store, setup_entry, "otto")
    else:
        await change_user(store, setup_entry, "otto", UserChange(role="viewer"))
    async with http.get(dashboard.url + "/api/queues") as response:
        assert response.status == 401, change
    async with http.get(dashboard.url + "/api/queues", headers=otto.bearer) as response:
        assert response.status == (200 if change in ("passwd", "role") else 401), change


async def test_api_tokens_work_until_revoked_and_never_for_a_disabled_user(dashboard: Dashboard, http) -> None:
    store = dashboard.engine.store
    otto = await add_member(store, "otto", "operator")
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    async with http.post(f"{dashboard.url}/api/jobs/{job.id}/run", headers=otto.bearer) as response:
        assert response.status == 200
    tokens = await store.token_list("otto")
    assert tokens[0]["last_used_at"] is not None
    await revoke_tokens(store, setup_entry, "otto")
    async with http.get(dashboard.url + "/api/queues", headers=otto.bearer) as response:
        assert response.status == 401 and "revoked" in (await response.json())["error"]
    sam = await add_member(store, "sam", "operator")
    await change_user(store, setup_entry, "sam", UserChange(disabled=True))
    async with http.get(dashboard.url + "/api/queues", headers=sam.bearer) as response:
        assert response.status == 401
    async with http.post(dashboard.url + "/login", data={"user": "sam", "token": sam.password}) as response:
        assert response.status == 401


async def test_bad_account_input_is_refused_by_name(dashboard: Dashboard, http) -> None:
    store = dashboard.engine.store
    ada = await add_member(store, "ada", "admin")
    with pytest.raises(ValueError, match="control"):
        await add_user(store, setup_entry, "eve\x1b[31m", "viewer", password="x")
    with pytest.raises(ValueError, match="empty"):
        await add_user(store, setup_entry, "eve", "viewer", password="")
    with pytest.raises(ValueError, match="role"):
        await add_user(store, setup_entry, "eve", "root", password="x")
    with pytest.raises(PermissionError, match="last enabled admin"):
        await remove_user(store, setup_entry, "ada")
    with pytest.raises(PermissionError, match="last enabled admin"):
        await change_user(store, setup_entry, "ada", UserChange(role="operator"))
    async with http.post(f"{dashboard.url}/api/users/ada/remove", headers=ada.bearer) as response:
        assert response.status == 409 and "last enabled admin" in (await response.json())["error"]
    async with http.post(f"{dashboard.url}/api/users", headers=ada.bearer,
                         json={"name": "bad\nname", "role": "viewer", "password": "pw"}) as response:
        assert response.status == 400 and "control" in (await response.json())["error"]
    assert [u["name"] for u in await store.user_list()] == ["ada"]


async def test_the_login_throttle_counts_per_account_and_per_forwarded_client(make_config, http) -> None:
    config = make_config(dashboard={"token": TOKEN, "trusted_proxies": ["127.0.0.1/32"]})
    engine = Engine(config=config)
    async with engine, serve(engine, bind="127.0.0.1:0") as server:
        await add_member(engine.store, "otto", "operator")
        # Behind the proxy, each client counts on its own address: one client's guesses lock out only it.
        for _ in range(10):
            async with http.post(server.url + "/login", data={"token": "guess"},
                                 headers={"X-Forwarded-For": "203.0.113.5"}) as response:
                assert response.status == 401
        async with http.post(server.url + "/login", data={"token": "guess"},
                             headers={"X-Forwarded-For": "203.0.113.5"}) as response:
            assert response.status == 429
        async with http.post(server.url + "/login", data={"token": TOKEN},
                             headers={"X-Forwarded-For": "198.51.100.7"}, allow_redirects=False) as response:
            assert response.status == 303
        # An account's failures count whatever address they come from.
        for i in range(10):
            async with http.post(server.url + "/login", data={"user": "otto", "token": "wrong"},
                                 headers={"X-Forwarded-For": f"192.0.2.{i}"}) as response:
                assert response.status == 401
        async with http.post(server.url + "/login", data={"user": "otto", "token": "wrong"},
                             headers={"X-Forwarded-For": "192.0.2.99"}) as response:
            assert response.status == 429


async def test_single_sign_on_believes_the_header_only_from_trusted_proxies(make_config, http) -> None:
    for proxies, expected in ((["127.0.0.0/8"], 200), (["10.0.0.0/8"], 403)):
        config = make_config(dashboard={"token": TOKEN, "trusted_header": "X-Forwarded-User",
                                        "trusted_proxies": proxies})
        engine = Engine(config=config)
        async with engine, serve(engine, bind="127.0.0.1:0") as server:
            member: Member = await add_member(engine.store, f"otto-{expected}", "operator")
            async with http.get(server.url + "/api/queues", headers={"X-Forwarded-User": member.name}) as response:
                assert response.status == expected, proxies
                if expected == 403:
                    assert "trusted_proxies" in (await response.json())["error"]
            async with http.get(server.url + "/api/queues", headers={"X-Forwarded-User": "nobody"}) as response:
                assert response.status == 403
            if expected == 200:  # a browser behind the proxy gets a session for its forms' CSRF token
                job = await engine.enqueue("log", {"level": "info", "message": "x"}, delay=3600)
                sso = {"X-Forwarded-User": member.name}
                async with http.get(server.url + "/", headers=sso) as response:
                    page = await response.text()
                csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
                async with http.post(f"{server.url}/jobs/{job.id}/cancel", data={"csrf_token": csrf},
                                     headers=sso, allow_redirects=False) as response:
                    assert response.status == 303
                rows = await engine.store.audit_list(action="job.cancel")
                assert [(r["actor"], r["details"]["via"]) for r in rows] == [(member.name, "sso")]


async def test_forged_and_expired_session_cookies_are_refused(dashboard: Dashboard, http) -> None:
    otto = await add_member(dashboard.engine.store, "otto", "operator")
    await log_in(http, dashboard.url, otto.name, otto.password)
    cookie = {c.key: c.value for c in http.cookie_jar}["jobengine_session"]
    async with aiohttp.ClientSession() as bare:
        for forged in ("A" * 32, cookie[:-1] + ("B" if cookie[-1] != "B" else "C"), f"{cookie}.sig", ""):
            async with bare.get(dashboard.url + "/api/queues",
                                headers={"Cookie": f"jobengine_session={forged}"}) as response:
                assert response.status == 401, forged
        store = dashboard.engine.store
        async with store.pool.acquire() as conn:
            await conn.execute(f'UPDATE "{store.schema}".sessions SET expires_at = now() - interval \'1 second\'')
        async with bare.get(dashboard.url + "/api/queues", headers={"Cookie": f"jobengine_session={cookie}"}) as r:
            assert r.status == 401


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_throttle(dashboard: Dashboard,
                                                                                   http) -> None:
    statuses = []
    for i in range(11):  # no trusted_proxies: every guess counts against the real peer
        async with http.post(dashboard.url + "/login", data={"token": "guess"},
                             headers={"X-Forwarded-For": f"198.51.100.{i}"}) as response:
            statuses.append(response.status)
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


async def test_names_no_user_could_have_are_refused_before_the_database(dashboard: Dashboard, http) -> None:
    ada = await add_member(dashboard.engine.store, "ada", "admin")
    async with http.post(dashboard.url + "/login", data={"user": "a\x00b", "token": "x"}) as response:
        assert response.status == 401
    for path in ("/api/users/a%00b/remove", "/api/users/a%00b/token", "/api/users/%1b%5b31m/password"):
        async with http.post(dashboard.url + path, headers=ada.bearer, json={"password": "x"}) as response:
            assert response.status == 400, path
    async with http.get(dashboard.url + "/api/audit?actor=%00", headers=ada.bearer) as response:
        assert response.status == 400 and "NUL" in (await response.json())["error"]
