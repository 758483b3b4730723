"""The Users and Audit pages and their API (admins only): ``/users``, ``/api/users``,
``/audit``, ``/api/audit``. Every handler checks the admin role itself, whatever the
middleware already checked; every change goes through :mod:`engine.web.users`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from engine.core.accounts import AuditEntry, Role
from engine.core.config import parse_duration
from engine.db.account_rows import UserChange
from engine.web import users
from engine.web.actions import BadRequest, Conflict, NotFound
from engine.web.audit import entry
from engine.web.auth import Principal
from engine.web.context import ENGINE, principal_of, render, url
from engine.web.stores import job_store

T = TypeVar("T")
AUDIT_PAGE = 100
USER_ACTIONS = ("remove", "disable", "enable", "update", "password", "token", "revoke")
NOTICES = {"user-add": "Added the user.", "remove": "Removed the user.", "disable": "Disabled the user.",
           "enable": "Enabled the user.", "update": "Changed the user.", "password": "Changed the password.",
           "revoke": "Revoked the tokens."}


def _admin(request: web.Request) -> Principal:
    principal = principal_of(request)
    principal.require(Role.ADMIN)
    return principal


def _audit_as(principal: Principal) -> users.AuditAs:
    def build(action: str, target: str | None = None, **details: Any) -> AuditEntry:
        return entry(principal, action, target, **details)
    return build


async def _run(operation: Awaitable[T]) -> T:
    """The operation's result; its refusals as 400, 404 or 409 with its message."""
    try:
        return await operation
    except PermissionError as exc:
        raise Conflict(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _flag(value: object) -> bool | None:
    """A form or JSON boolean: true/false, on/off, yes/no, 1/0; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise BadRequest(f"{value!r} is not a yes/no value")


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    return value


async def _act(request: web.Request, name: str, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One user action; returns what the API answers (a new token only for ``token``)."""
    store, audit_as = job_store(request.app[ENGINE]), _audit_as(_admin(request))
    if action == "remove":
        await _run(users.remove_user(store, audit_as, name))
    elif action in ("disable", "enable"):
        await _run(users.change_user(store, audit_as, name, UserChange(disabled=action == "disable")))
    elif action == "update":
        change = UserChange(role=_text(body, "role"), can_view_args=_flag(body.get("can_view_args")),
                            disabled=_flag(body.get("disabled")))
        await _run(users.change_user(store, audit_as, name, change))
    elif action == "password":
        password = _text(body, "password", required=True) or ""
        await _run(users.set_password(store, audit_as, name, password))
    elif action == "token":
        token = await _run(users.new_token_for(store, audit_as, name, _text(body, "name") or "api"))
        return {"user": name, "token": token}
    elif action == "revoke":
        return {"user": name, "revoked": await _run(users.revoke_tokens(store, audit_as, name, _text(body, "name")))}
    else:
        raise NotFound(f"unknown user action {action!r}; use one of {', '.join(USER_ACTIONS)}")
    return {"user": name, "action": action}


async def _add(request: web.Request, body: Mapping[str, Any]) -> str:
    store, audit_as = job_store(request.app[ENGINE]), _audit_as(_admin(request))
    name = _text(body, "name", required=True) or ""
    await _run(users.add_user(store, audit_as, name, _text(body, "role", required=True) or "",
                              can_view_args=bool(_flag(body.get("can_view_args"))),
                              password=_text(body, "password")))
    return name


# --- users: page and API ------------------------------------------------------------------------

async def users_page(request: web.Request, new_token: dict[str, Any] | None = None) -> web.Response:
    _admin(request)
    found = await users.users_with_tokens(job_store(request.app[ENGINE]))
    return render(request, "users.html", {"nav": "users", "users": found, "roles": [r.value for r in Role],
                                          "notice": NOTICES.get(request.query.get("done", "")),
                                          "new_token": new_token})


async def users_form_add(request: web.Request) -> web.Response:
    await _add(request, await request.post())
    raise web.HTTPSeeOther("/users?done=user-add")


async def users_form_action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    result = await _act(request, request.match_info["name"], action, await request.post())
    if action == "token":  # shown once, on this response: never in a URL or a redirect
        return await users_page(request, new_token=result)
    raise web.HTTPSeeOther(f"/users?done={action}")


async def _body(request: web.Request) -> dict[str, Any]:
    if not (await request.text()).strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body: must be a JSON object")
    return body


async def users_api(request: web.Request) -> web.Response:
    _admin(request)
    return web.json_response({"users": _json(await users.users_with_tokens(job_store(request.app[ENGINE])))})


async def users_api_add(request: web.Request) -> web.Response:
    name = await _add(request, await _body(request))
    return web.json_response({"user": name}, status=201)


async def users_api_action(request: web.Request) -> web.Response:
    result = await _act(request, request.match_info["name"], request.match_info["action"], await _body(request))
    return web.json_response(result)


# --- the audit log ------------------------------------------------------------------------------

def _audit_filters(query: Mapping[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {name: query.get(name) or None for name in ("actor", "action", "target")}
    for name, value in filters.items():
        if value is not None and (len(value) > 200 or "\x00" in value):
            raise BadRequest(f"{name}: at most 200 characters, no NUL")
    since, before = query.get("since"), query.get("before")
    if since:
        try:
            filters["since"] = datetime.fromisoformat(since)
        except ValueError:
            try:
                filters["since"] = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
            except ValueError:
                raise BadRequest(f"since: {since!r} is neither an ISO time nor a duration like '24h'") from None
        if filters["since"].tzinfo is None:
            filters["since"] = filters["since"].replace(tzinfo=UTC)
    if before:
        if not before.isdigit() or len(before) > 18:
            raise BadRequest("before: must be an audit row id")
        filters["before"] = int(before)
    return filters


async def _audit_rows(request: web.Request) -> tuple[list[dict[str, Any]], str | None]:
    _admin(request)
    filters = _audit_filters(request.query)
    rows = await job_store(request.app[ENGINE]).audit_list(**filters, limit=AUDIT_PAGE + 1)
    more = len(rows) > AUDIT_PAGE
    rows = rows[:AUDIT_PAGE]
    shown = {k: v for k, v in request.query.items() if k in ("actor", "action", "target", "since")}
    next_page = url(request.path, {**shown, "before": rows[-1]["id"]}) if more and rows else None
    return rows, next_page


async def audit_page(request: web.Request) -> web.Response:
    rows, next_page = await _audit_rows(request)
    return render(request, "audit.html", {"nav": "audit", "rows": rows, "next_page": next_page,
                                          "query": request.query, "notice": None})


async def audit_api(request: web.Request) -> web.Response:
    rows, next_page = await _audit_rows(request)
    return web.json_response({"entries": _json(rows), "next": next_page})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/users", users_page)
    app.router.add_post("/users", users_form_add)
    app.router.add_post("/users/{name}/{action}", users_form_action)
    app.router.add_get("/audit", audit_page)
    app.router.add_get("/api/users", users_api)
    app.router.add_post("/api/users", users_api_add)
    app.router.add_post("/api/users/{name}/{action}", users_api_action)
    app.router.add_get("/api/audit", audit_api)
