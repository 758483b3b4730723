"""Who may see and do what: tokens, sessions, roles, CSRF, cross-site requests, escaping,
and the local-only rule when no token is configured."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from engine.core.config import DashboardConfig
from engine.engine import Engine
from engine.web import listen_address, serve
from tests.support.waiting import wait_until
from tests.web.conftest import READONLY_TOKEN, SECRET_VALUE, TOKEN, XSS, Dashboard, login

SAMPLE = {"job_id": "1", "action": "retry", "name": "default", "filename": "app.css"}


def _routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, with sample values for its parameters."""
    found = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)
        found.append((route.method, path))
    return found


async def test_every_route_but_healthz_requires_credentials(dashboard: Dashboard, http) -> None:
    routes = _routes(dashboard.server.app)
    assert len(routes) >= 25 and ("GET", "/static/app.css") in routes
    for method, path in routes:
        async with http.request(method, dashboard.url + path, allow_redirects=False) as response:
            if path == "/healthz":
                assert response.status == 200 and (await response.json())["database"] is True
            else:
                assert response.status == 401, (method, path, response.status)
    for path in ("/api/jobs", "/", "/metrics"):
        async with http.get(dashboard.url + path, headers={"Authorization": "Bearer wrong-token"}) as response:
            assert response.status == 401
    async with http.get(dashboard.url + "/api/jobs") as response:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["status"] == 401


async def test_unauthenticated_page_shows_the_login_form(dashboard: Dashboard, http) -> None:
    async with http.get(dashboard.url + "/jobs?state=discarded") as response:
        assert response.status == 401
        page = await response.text()
    assert 'action="/login"' in page and 'value="/jobs?state=discarded"' in page


async def test_login_sets_a_strict_httponly_session_cookie(dashboard: Dashboard, http) -> None:
    async with http.post(dashboard.url + "/login", data={"token": TOKEN}, allow_redirects=False) as response:
        assert response.status == 303
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    async with http.get(dashboard.url + "/api/queues") as response:
        assert response.status == 200


async def test_wrong_tokens_are_throttled(dashboard: Dashboard, http) -> None:
    statuses = []
    for _ in range(11):
        async with http.post(dashboard.url + "/login", data={"token": "guess"}) as response:
            statuses.append(response.status)
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


async def test_session_post_needs_the_csrf_token(dashboard: Dashboard, http) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    csrf = await login(http, dashboard.url)
    async with http.post(f"{dashboard.url}/jobs/{job.id}/run", data={}, allow_redirects=False) as response:
        assert response.status == 403
        assert "CSRF" in await response.text()
    async with http.post(f"{dashboard.url}/jobs/{job.id}/run", data={"csrf_token": "forged"}) as response:
        assert response.status == 403
    assert (await dashboard.engine.get(job.id)).state == "scheduled"
    async with http.post(f"{dashboard.url}/jobs/{job.id}/run", data={"csrf_token": csrf},
                         allow_redirects=False) as response:
        assert response.status == 303
    assert (await dashboard.engine.get(job.id)).state in ("available", "executing", "completed")


async def test_cross_site_post_is_refused(dashboard: Dashboard, http) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    csrf = await login(http, dashboard.url)
    forged = [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}]
    for headers in forged:
        async with http.post(f"{dashboard.url}/jobs/{job.id}/cancel", data={"csrf_token": csrf},
                             headers=headers, allow_redirects=False) as response:
            assert response.status == 403, headers
        async with http.post(f"{dashboard.url}/api/jobs/{job.id}/cancel", headers={**dashboard.auth, **headers}) as r:
            assert r.status == 403 and "cross" in (await r.json())["error"]
    async with http.post(f"{dashboard.url}/login", data={"token": TOKEN},
                         headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
    assert (await dashboard.engine.get(job.id)).state == "scheduled"
    same_origin = {"Origin": dashboard.url, "Sec-Fetch-Site": "same-origin"}
    async with http.post(f"{dashboard.url}/jobs/{job.id}/cancel", data={"csrf_token": csrf},
                         headers=same_origin, allow_redirects=False) as response:
        assert response.status == 303
    assert (await dashboard.engine.get(job.id)).state == "cancelled"


async def test_read_only_user_can_look_but_not_act(dashboard: Dashboard, http) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "ok"}, delay=3600)
    readonly = {"Authorization": f"Bearer {READONLY_TOKEN}"}
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/cron", "/api/jobs", f"/api/jobs/{job.id}", "/metrics"):
        async with http.get(dashboard.url + path, headers=readonly) as response:
            assert response.status == 200, path
    mutations = [(f"/api/jobs/{job.id}/{action}", None) for action in ("retry", "cancel", "delete", "run")]
    mutations += [("/api/jobs", {"jobType": "scripted"}), ("/api/jobs/bulk", {"action": "delete", "ids": [job.id]}),
                  ("/api/queues/default/pause", None), ("/api/queues/default/scale", {"concurrency": 1})]
    for path, body in mutations:
        async with http.post(dashboard.url + path, headers=readonly, json=body) as response:
            assert response.status == 403, path
            assert "read-only" in (await response.json())["error"]
    csrf = await login(http, dashboard.url, READONLY_TOKEN)
    async with http.get(f"{dashboard.url}/jobs/{job.id}") as response:
        page = await response.text()
    assert "/retry" not in page and "/delete" not in page  # no buttons it could not use
    async with http.post(f"{dashboard.url}/jobs/{job.id}/delete", data={"csrf_token": csrf}) as response:
        assert response.status == 403
    assert (await dashboard.engine.get(job.id)).state == "scheduled"
    assert (await dashboard.engine.store.queue_controls()).get("default", {}).get("paused") is not True


async def test_job_data_is_rendered_as_text_never_markup(dashboard: Dashboard, http) -> None:
    job = await dashboard.engine.enqueue("scripted", {"action": "raise", "message": XSS, "note": XSS},
                                         tags=["<b>tag</b>"], max_attempts=1)
    await wait_until(lambda: _state(dashboard, job.id, "discarded"))
    for path in (f"/jobs/{job.id}", "/jobs", f"/partials/jobs/{job.id}"):
        async with http.get(dashboard.url + path, headers=dashboard.auth) as response:
            page = await response.text()
        assert "<img src=x" not in page and "<b>tag</b>" not in page, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, path
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None, "no inline script"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_secret_values_never_reach_the_dashboard(dashboard: Dashboard, http) -> None:
    # Rows written around the inserter (an old row, a handler's own SQL) must still be redacted.
    async with dashboard.engine.store.pool.acquire() as conn:
        job_id = await conn.fetchval(
            f'INSERT INTO "{dashboard.engine.store.schema}".jobs (kind, args, state, result, errors) '
            "VALUES ('scripted', $1, 'completed', $2, $3) RETURNING id",
            {"password": SECRET_VALUE}, {"echo": SECRET_VALUE}, [{"attempt": 1, "error": f"bad {SECRET_VALUE}"}])
    for path in (f"/jobs/{job_id}", "/jobs", f"/api/jobs/{job_id}", "/api/jobs"):
        async with http.get(dashboard.url + path, headers=dashboard.auth) as response:
            body = await response.text()
        assert SECRET_VALUE not in body and "***" in body, path


async def test_without_a_token_the_server_listens_on_loopback_only(caplog: pytest.LogCaptureFixture) -> None:
    assert listen_address(DashboardConfig(bind="0.0.0.0:9999")) == ("127.0.0.1", 9999)
    assert listen_address(DashboardConfig(bind="[::]:8080")) == ("127.0.0.1", 8080)
    assert listen_address(DashboardConfig(bind="0.0.0.0:8080", token="x" * 20)) == ("0.0.0.0", 8080)


async def test_local_mode_refuses_foreign_host_names(make_config, http) -> None:
    engine = Engine(config=make_config(dashboard={"bind": "0.0.0.0:0"}))
    async with engine, serve(engine) as server:
        assert server.host == "127.0.0.1"
        async with http.get(server.url + "/api/queues") as response:
            assert response.status == 200  # loopback, no token: allowed
        async with http.get(server.url + "/api/queues", headers={"Host": "evil.example"}) as response:
            assert response.status == 403  # a DNS-rebinding page cannot read it
        async with http.post(server.url + "/api/queues/default/pause", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403


def _state(dashboard: Dashboard, job_id: int, state: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        job = await dashboard.engine.get(job_id)
        return job is not None and job.state == state
    return check()

