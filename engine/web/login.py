"""Logging in and out: a user name and password, or a shared dashboard token.

Failed logins are throttled per client address (behind a trusted proxy, the address it
forwards) and per account, and each one, like each login, appends an audit row.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio.to_thread
from aiohttp import web

from engine.core.accounts import SHARED_TOKEN_ACTOR, AuditEntry, Role, check_name, verify_password
from engine.web.audit import record
from engine.web.auth import COOKIE, Auth, Principal, set_session_cookie
from engine.web.context import AUTH, ENGINE, PRINCIPAL, SETTINGS, principal_of, render, safe_next

MAX_FIELD = 1024


async def login_page(request: web.Request) -> web.Response:
    target = safe_next(request.query.get("next"))
    if request.get(PRINCIPAL) is not None:
        raise web.HTTPSeeOther(target)
    return render(request, "login.html", {"error": None, "next": target}, status=401)


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name, "")
    return value[:MAX_FIELD] if isinstance(value, str) else ""


async def _check(auth: Auth, user: str, secret: str) -> Principal | None:
    """The principal these credentials stand for, or None."""
    if not user:
        role = auth.role_for_token(secret.strip()) if secret.strip() else None
        return Principal(SHARED_TOKEN_ACTOR, role, "session") if role is not None else None
    try:  # a name no user could have (a NUL, a control character) is not looked up at all
        found = await auth.store.user_get(check_name(user))
    except ValueError:
        found = None
    usable = found is not None and not found["disabled"]
    stored = found["password_hash"] if usable and found else None
    # argon2id takes a CPU-bound fraction of a second: off the event loop, which runs the
    # jobs too, and at most HASH_SLOTS at once, so a spray of logins cannot take every core.
    if not await anyio.to_thread.run_sync(verify_password, stored, secret, limiter=auth.hash_limiter):
        return None
    assert found is not None
    return Principal(user, Role(found["role"]), "session", found["can_view_args"])


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    form = await request.post()
    target = safe_next(_field(form, "next") or "/")
    # One secret field, named "token" since the shared tokens came first: a user's password
    # when a user name is given, else a dashboard token ("password" is accepted as well).
    user, secret = _field(form, "user").strip(), _field(form, "token") or _field(form, "password")
    client = auth.proxies.client_address(request)
    keys = [f"addr:{client}"] + ([f"user:{user}"] if user else [])
    if not auth.throttle.allowed(*keys):
        return render(request, "login.html", {"error": "Too many failed attempts; wait a minute.",
                                              "next": target}, status=429)
    principal = await _check(auth, user, secret)
    engine = request.app[ENGINE]
    if principal is None:
        auth.throttle.failed(*keys)
        actor = ascii(user)[1:-1][:100] if user else SHARED_TOKEN_ACTOR
        await auth.store.audit(AuditEntry(actor, "none", "login.failed", None, {"client": client}))
        what = "That user name and password do not match." if user else "That token is not valid."
        return render(request, "login.html", {"error": what, "next": target}, status=401)
    cookie, session = await auth.new_session(principal.name, principal.role, user=bool(user))
    await record(engine, session, "login", f"user:{principal.name}" if user else None, client=client)
    response = web.HTTPSeeOther(target)
    set_session_cookie(response, request, cookie, request.app[SETTINGS].session_ttl)
    raise response


async def logout(request: web.Request) -> web.Response:
    principal = principal_of(request)
    await request.app[AUTH].end_session(principal)
    await record(request.app[ENGINE], principal, "logout")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response
