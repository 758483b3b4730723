"""What the application, its middleware and its route handlers share: the typed keys of
the aiohttp application and request, and the helpers handlers call (the principal,
rendering a page, safe redirect targets, URLs).

Example::

    async def overview(request: web.Request) -> web.Response:
        data = await request.app[SNAPSHOTS].overview()
        return render(request, "overview.html", {"ov": data})
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from engine.core.config import DashboardConfig
from engine.engine import Engine
from engine.web.auth import Auth, Principal
from engine.web.metrics import Metrics
from engine.web.snapshot import Snapshots

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Auth)
SNAPSHOTS = web.AppKey("snapshots", Snapshots)
METRICS = web.AppKey("metrics", Metrics)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STATIC: web.AppKey[dict[str, tuple[bytes, str, str]]] = web.AppKey("static", dict)
SETTINGS = web.AppKey("settings", DashboardConfig)
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal", object)  # type: ignore[arg-type]
NONCE = web.RequestKey("nonce", str)


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/metrics", "/healthz")


def principal_of(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    assert principal is not None
    return principal


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """A template with what every page needs: principal, CSRF token, nonce, static URLs."""
    app = request.app
    principal = request.get(PRINCIPAL)
    page = app[TEMPLATES].get_template(template).render(
        request=request, principal=principal, csrf=getattr(principal, "csrf", None) or "",
        nonce=request.get(NONCE, ""), refresh_ms=int(app[SETTINGS].refresh_interval * 1000),
        static=lambda name: f"/static/{name}?v={app[STATIC][name][2]}", **context)
    return web.Response(text=page, content_type="text/html", status=status)


def safe_next(target: str | None) -> str:
    """A same-site path to return to (never ``//evil`` or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def url(path: str, params: dict[str, Any] | None = None) -> str:
    query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(query)}" if query else path
