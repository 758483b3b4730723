"""What the application, its middleware and its route handlers share: the typed keys of
the aiohttp application and request, and the helpers handlers call (the principal,
rendering a page, safe redirect targets, URLs).

Example::

    async def overview(request: web.Request) -> web.Response:
        data = await request.app[SNAPSHOTS].overview()
        return render(request, "overview.html", {"ov": data})
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

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
    """A same-origin path to return to, else ``/``.

    URL parsers drop TAB, CR and LF and read ``\\`` as ``/`` (``/\t/evil.example`` and
    ``/\\evil.example`` both become ``//evil.example``), and some servers decode ``%2F``
    and ``%5C`` before routing; so the target is judged in every decoded form, and any
    control character or line separator, backslash or second leading slash refuses it.

    Example::

        safe_next("/jobs?state=failed")    # '/jobs?state=failed'
        safe_next("/%09/evil.example")     # '/'
    """
    if not target or len(target) > 2_000:
        return "/"
    forms, text = [target], target
    for _ in range(3):  # %252F -> %2F -> /
        text = unquote(text)
        forms.append(text)
    for form in forms:
        if not form.startswith("/") or form[1:2] in ("/", "\\") or "\\" in form:
            return "/"
        if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in form):  # TAB, LF, CR, U+2028...
            return "/"
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return "/"
    return target


def segment(value: object) -> str:
    """``value`` as one URL path segment: every ``/``, ``.``-run and reserved character encoded,
    so a name like ``x/../default`` cannot make a form act on another object."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text.strip(".") == "" else text


def url(path: str, params: dict[str, Any] | None = None) -> str:
    query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(query)}" if query else path
