"""Redirect targets stay on the dashboard's origin, and names that become URL path segments
(queues, cron entries) cannot make a button act on another object."""

from __future__ import annotations

import pytest

from engine import EnqueueError
from engine.core.config import ConfigError, build_config
from engine.web.context import safe_next, segment
from tests.web.conftest import Dashboard, login

EVIL = [
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\x0b/evil.example", "/\u2028/evil.example",
    "/%09/evil.example", "/%0a/evil.example", "//evil.example", "/\\evil.example", "/\\/evil.example",
    "/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example", "/%252F%252Fevil.example",
    "https://evil.example", "javascript:alert(1)", "evil.example", "", " //evil.example",
]


@pytest.mark.parametrize("target", EVIL)
def test_safe_next_refuses_anything_that_could_leave_the_origin(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/jobs?state=failed&q=a%20b", "/jobs/5", "/cron?done=run&n=1"])
def test_safe_next_keeps_same_origin_paths(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize("raw", ["/%09/evil.example", "/%0A/evil.example", "/%0D/evil.example",
                                 "%2F%2Fevil.example", "/%5C/evil.example"])
async def test_login_redirects_only_to_this_origin(dashboard: Dashboard, http, raw: str) -> None:
    await login(http, dashboard.url)
    async with http.get(f"{dashboard.url}/login?next={raw}", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/"
    http.cookie_jar.clear()
    async with http.post(f"{dashboard.url}/login", allow_redirects=False,
                         data={"token": "operator-token-for-tests-0123456789", "next": raw.replace("%09", "\t")}) as r:
        assert r.status == 303 and r.headers["Location"] == "/"


@pytest.mark.parametrize("settings", [
    {"queues": {"x/../default": {}}},
    {"queues": {"..": {}}},
    {"cron": [{"name": "x/../../jobs/5", "schedule": "@daily", "job": {"jobType": "log", "data": {"message": "m"}}}]},
    {"cron": [{"name": "a\\b", "schedule": "@daily", "job": {"jobType": "log", "data": {"message": "m"}}}]},
])
def test_names_that_would_change_an_action_path_are_refused_at_config_load(settings: dict) -> None:
    with pytest.raises(ConfigError, match=r"name .* must not contain"):
        build_config(settings)


async def test_a_queue_name_with_a_slash_is_refused_at_enqueue(dashboard: Dashboard) -> None:
    with pytest.raises(EnqueueError, match=r"queue name 'x/\.\./default' must not contain /"):
        await dashboard.engine.enqueue("scripted", {}, queue="x/../default")


def test_path_segments_are_fully_encoded() -> None:
    assert segment("x/../default") == "x%2F..%2Fdefault"
    assert segment("a b?c#d&e") == "a%20b%3Fc%23d%26e"
    assert segment("..") == "%2E%2E"

