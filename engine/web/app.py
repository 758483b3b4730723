"""The aiohttp application: security middleware, templates, static files, route tables.

Example::

    app = create_app(engine)           # a started Engine
    # serve it with engine.web.serve(engine), or any aiohttp runner
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources

import asyncpg
import jinja2
import structlog
from aiohttp import web

from engine.core.accounts import Role
from engine.core.config import DashboardConfig
from engine.core.tracebacks import format_traceback
from engine.engine import Engine
from engine.web import accounts, alerts, api, charts, definitions, job_forms, live, nodes, pages, present
from engine.web.actions import ActionError
from engine.web.auth import CSRF_FIELD, Auth, AuthError, set_session_cookie
from engine.web.context import (
    AUTH,
    ENGINE,
    METRICS,
    NONCE,
    PRINCIPAL,
    SETTINGS,
    SNAPSHOTS,
    STATIC,
    TEMPLATES,
    render,
    safe_next,
    segment,
    url,
    wants_json,
)
from engine.web.metrics import Metrics
from engine.web.snapshot import Snapshots
from engine.web.stores import job_store

log = structlog.get_logger("jobengine.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = frozenset({"/healthz"})
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
MAX_BODY = 2 * 1024 * 1024


# --- middleware ------------------------------------------------------------------------------

@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON (API) or pages (dashboard), never a stack trace; security headers on
    every response."""
    request[NONCE] = secrets.token_urlsafe(16)
    try:
        response = await handler(request)
    except AuthError as exc:
        response = error_response(request, exc.status, exc.message)
    except ActionError as exc:
        response = error_response(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, exc.status, exc.reason)
    except Exception as exc:
        # By what the error means: a refused value is the request's fault (400), an unreachable
        # database is transient (503), anything else is a bug (500, logged).
        problem = refused_value(exc)
        if problem is not None:
            log.info("dashboard request: value refused", path=request.path, error=problem)
            response = error_response(request, 400, problem)
        elif isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            log.warning("dashboard request: database unavailable", path=request.path, error=str(exc))
            response = error_response(request, 503, f"database unavailable ({type(exc).__name__}); try again shortly")
        else:
            # Bounded before it is formatted: a recursion-deep traceback would block the loop.
            trace = request.app[ENGINE].secrets.redact_text(format_traceback(exc))
            log.error("dashboard request failed", path=request.path, method=request.method, exception=trace)
            response = error_response(request, 500, "internal error (logged on the server)")
    _headers(request, response)
    return response


def refused_value(exc: BaseException) -> str | None:
    """What was wrong with a value the database (or its driver) refused, or None when the
    error says nothing about the request's values (the database is down, a bug)."""
    if isinstance(exc, asyncpg.DataError):  # SQLSTATE class 22: out of range, bad text, NUL, bad encoding
        return f"a value was refused ({exc.sqlstate}): {exc}"[:500]
    if isinstance(exc, asyncpg.ProgramLimitExceededError):  # 54xxx: too deep or too big for Postgres
        return f"a value is too large or nested too deeply ({exc.sqlstate}): {exc}"[:500]
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):  # the driver could not encode it
        return f"a value was refused: {exc}"[:500]
    if isinstance(exc, RecursionError):
        return "a value is nested too deeply"
    return None


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    nonce = request.get(NONCE, "")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; "
        f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route but /healthz needs credentials; POSTs also pass the origin, CSRF and
    role checks (operator, except logging out). /login is reachable to present credentials."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    auth = request.app[AUTH]
    principal = await auth.authenticate(request)
    request[PRINCIPAL] = principal
    if request.path == LOGIN_PATH:
        if request.method == "POST":
            auth.check_origin(request)
        return await handler(request)
    if principal is None:
        raise AuthError(401, "authentication required: log in, or send Authorization: Bearer <token>")
    new_cookie = None
    if principal.via in ("local", "sso") and principal.csrf is None and request.method == "GET" \
            and not wants_json(request):
        # Local mode and single sign-on: give the browser a session so its forms carry a CSRF token.
        new_cookie, session = await auth.new_session(principal.name, principal.role, user=principal.via == "sso")
        principal = replace(principal, session=session.session, csrf=session.csrf)
        request[PRINCIPAL] = principal
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        form = await request.post() if request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data") else {}
        value = form.get(CSRF_FIELD)
        needs = Role.VIEWER if request.path == LOGOUT_PATH else Role.OPERATOR
        auth.check_unsafe(request, principal, value if isinstance(value, str) else None, needs=needs)
    response = await handler(request)
    if new_cookie is not None:
        set_session_cookie(response, request, new_cookie, request.app[SETTINGS].session_ttl)
    return response


# --- responses -------------------------------------------------------------------------------

def error_response(request: web.Request, status: int, message: str) -> web.Response:
    # Messages can quote input (a bad document's field); never let one carry a secret out.
    message = request.app[ENGINE].secrets.redact_text(message)
    if wants_json(request):
        response = web.json_response({"error": message, "status": status}, status=status)
    elif status == 401:
        response = render(request, "login.html", {"error": None, "next": safe_next(request.path_qs)}, status=401)
    else:
        response = render(request, "error.html", {"status": status, "message": message}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="jobengine"'
    return response


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["filename"]
    found = request.app[STATIC].get(name)
    if found is None:
        raise web.HTTPNotFound(reason=f"no static file {name}")
    body, content_type, _ = found
    return web.Response(body=body, content_type=content_type,
                        headers={"Cache-Control": "private, max-age=86400"})


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    files = {}
    for entry in resources.files("engine.web").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            files[entry.name] = (body, STATIC_TYPES[suffix], hashlib.sha256(body).hexdigest()[:10])
    return files


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("engine.web", "templates"),
                             autoescape=jinja2.select_autoescape(["html"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pretty=present.pretty, clip=present.clip, age=present.age, since=present.since, segment=segment,
                       compact=lambda v: json.dumps(v, ensure_ascii=False, separators=(", ", ": "), default=str))
    env.globals.update(url=url, groups=present.GROUPS, states=present.STATES, group_of=present.GROUP_OF)
    return env


# --- the application -------------------------------------------------------------------------

def create_app(engine: Engine, settings: DashboardConfig | None = None) -> web.Application:
    """The dashboard, API, /metrics and /healthz for a started ``engine``.

    Example::

        app = create_app(engine, DashboardConfig(token="s3cret-operator-token"))
    """
    settings = settings or engine.config.dashboard
    app = web.Application(middlewares=[security, authenticate], client_max_size=MAX_BODY)
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app[AUTH] = Auth(settings, job_store(engine))
    app[SNAPSHOTS] = Snapshots(engine, ttl=min(settings.refresh_interval, 5.0), cap=settings.count_cap)
    app[METRICS] = Metrics(running=engine.running_per_queue)
    app[TEMPLATES] = _templates()
    app[STATIC] = _load_static()
    app.router.add_get("/static/{filename}", static_file)
    job_forms.add_routes(app)  # before pages: /jobs/new is not a job id
    pages.add_routes(app)
    api.add_routes(app)
    accounts.add_routes(app)
    definitions.add_routes(app)
    nodes.add_routes(app)
    alerts.add_routes(app)
    charts.add_routes(app)
    live.add_routes(app, engine, app[SNAPSHOTS], interval=min(settings.refresh_interval, 5.0))
    detach = app[METRICS].attach(engine.events)

    async def _detach(_app: web.Application) -> None:
        detach()

    app.on_cleanup.append(_detach)
    return app
