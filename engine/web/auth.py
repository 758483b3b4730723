"""Who is asking, and may they do it: bearer tokens, login sessions, CSRF and Origin checks.

Two roles: ``operator`` (``dashboard.token``) may act, ``readonly`` (``dashboard.readonly_token``)
may only look. A request proves its role with ``Authorization: Bearer <token>`` or with the
session cookie that ``POST /login`` sets. Sessions are signed, not stored: the cookie carries
``role.expiry.nonce.signature`` with an HMAC keyed by the role's token, so every process
sharing the config accepts it and changing a token ends its sessions at once.

State-changing requests are POSTs and must (a) come from this origin (``Origin`` /
``Sec-Fetch-Site``) and (b) when authenticated by cookie, carry the CSRF token derived from
the session (form field ``csrf_token`` or header ``X-CSRF-Token``). Bearer requests need no
CSRF token: a browser never attaches that header on its own.

With no token configured the server listens on 127.0.0.1 only and everyone who can reach
it there is an operator ("local mode"), provided the Host header names the loopback
(a DNS-rebinding page cannot pass) and, for POSTs from a browser, the CSRF token matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from aiohttp import web

from engine.core.config import DashboardConfig

COOKIE = "jobengine_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Failed logins per client address allowed in LOGIN_WINDOW seconds before 429.
LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0


class Role(StrEnum):
    OPERATOR = "operator"
    READONLY = "readonly"


class AuthError(Exception):
    """Refused: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``nonce`` identifies the session (None for bearer calls)."""

    role: Role
    via: str  # "bearer", "session" or "local"
    nonce: str | None = None
    csrf: str | None = None

    @property
    def can_act(self) -> bool:
        return self.role is Role.OPERATOR


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Auth:
    """Checks credentials for one dashboard.

    Example::

        auth = Auth(DashboardConfig(token="s3cret-operator-token"))
        principal = auth.authenticate(request)        # raises AuthError(401) without credentials
        auth.check_unsafe(request, principal)         # POST: origin, CSRF, role
    """

    def __init__(self, settings: DashboardConfig) -> None:
        self.settings = settings
        self.local_mode = not settings.token
        tokens = {Role.OPERATOR: settings.token, Role.READONLY: settings.readonly_token}
        self._tokens = {role: token for role, token in tokens.items() if token}
        # A per-process key in local mode: its sessions only ever need to survive this process.
        self._keys = {role: hashlib.sha256(b"jobengine-session\0" + token.encode()).digest()
                      for role, token in self._tokens.items()}
        if self.local_mode:
            self._keys[Role.OPERATOR] = secrets.token_bytes(32)
        self._revoked: set[str] = set()
        self._failures: dict[str, deque[float]] = {}

    # --- tokens and sessions -------------------------------------------------------------

    def role_for_token(self, token: str) -> Role | None:
        """The role a token grants; constant-time in the token's content."""
        found = None
        for role, expected in self._tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = role
        return found

    def new_session(self, role: Role) -> tuple[str, Principal]:
        """A fresh signed cookie value for ``role`` and the principal it stands for."""
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time() + self.settings.session_ttl)
        body = f"{role.value}.{expires}.{nonce}"
        cookie = f"{body}.{self._sign(role, body)}"
        return cookie, Principal(role, "session", nonce, self._csrf(role, nonce))

    def read_session(self, cookie: str) -> Principal | None:
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] not in {role.value for role in Role}:
            return None
        role, body = Role(parts[0]), ".".join(parts[:3])
        if role not in self._keys or not hmac.compare_digest(parts[3], self._sign(role, body)):
            return None
        if not parts[1].isdigit() or int(parts[1]) < time.time() or parts[2] in self._revoked:
            return None
        return Principal(role, "session", parts[2], self._csrf(role, parts[2]))

    def revoke(self, principal: Principal) -> None:
        """End a session in this process (logout); the cookie is also cleared."""
        if principal.nonce:
            self._revoked.add(principal.nonce)

    def _sign(self, role: Role, body: str) -> str:
        return _b64(hmac.new(self._keys[role], body.encode(), hashlib.sha256).digest())

    def _csrf(self, role: Role, nonce: str) -> str:
        return _b64(hmac.new(self._keys[role], b"csrf\0" + nonce.encode(), hashlib.sha256).digest())[:32]

    # --- request checks ---------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> Principal | None:
        """The caller, or None when the request carries no credentials at all.
        Raises AuthError(401) for wrong credentials."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            role = self.role_for_token(token.strip()) if scheme.lower() == "bearer" else None
            if role is None:
                raise AuthError(401, "invalid bearer token")
            return Principal(role, "bearer")
        cookie = request.cookies.get(COOKIE)
        principal = self.read_session(cookie) if cookie else None
        if principal is not None:
            return principal
        if self.local_mode:
            self.check_local(request)
            return Principal(Role.OPERATOR, "local")
        return None

    def check_local(self, request: web.Request) -> None:
        """Local mode serves loopback clients only, addressed by a loopback name."""
        host = (urlsplit(f"//{request.host}").hostname or "").lower()
        if host not in LOOPBACK_HOSTS and f"[{host}]" not in LOOPBACK_HOSTS:
            raise AuthError(403, "this dashboard has no token and answers to 127.0.0.1 only")

    @staticmethod
    def check_origin(request: web.Request) -> None:
        """Refuse a state-changing request that a browser sent from another site."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise AuthError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("Origin")
        if origin is None:
            return
        if origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower():
            raise AuthError(403, "cross-origin request refused (Origin does not match this dashboard)")

    def check_unsafe(self, request: web.Request, principal: Principal, csrf_value: str | None) -> None:
        """A POST that changes something: same origin, CSRF token (for sessions), operator role."""
        self.check_origin(request)
        if principal.via == "local" and not self._browser_request(request):
            pass  # a non-browser client on the loopback (curl, scripts): nothing to forge
        elif principal.via != "bearer":
            supplied = csrf_value or request.headers.get(CSRF_HEADER) or ""
            if principal.csrf is None or not hmac.compare_digest(supplied.encode(), principal.csrf.encode()):
                raise AuthError(403, "CSRF token missing or invalid: reload the page and try again")
        if not principal.can_act:
            raise AuthError(403, "read-only access: this action needs the operator token")

    @staticmethod
    def _browser_request(request: web.Request) -> bool:
        return any(h in request.headers for h in ("Origin", "Sec-Fetch-Site", "Cookie"))

    # --- login throttling -------------------------------------------------------------------

    def login_allowed(self, client: str) -> bool:
        recent = self._failures.get(client)
        now = time.monotonic()
        while recent and recent[0] < now - LOGIN_WINDOW:
            recent.popleft()
        return not recent or len(recent) < LOGIN_FAILURES

    def login_failed(self, client: str) -> None:
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
            self._failures.clear()
        self._failures.setdefault(client, deque()).append(time.monotonic())


def set_session_cookie(response: web.StreamResponse, request: web.Request, value: str, max_age: float) -> None:
    """HttpOnly, SameSite=Strict, Secure when served over TLS (directly or via a proxy)."""
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(COOKIE, value, httponly=True, samesite="Strict", secure=secure, path="/",
                        max_age=int(max_age))
