"""Who is asking, and may they do it: API tokens, login sessions, single sign-on, CSRF and
Origin checks.

Callers are named users (``jobengine users add``) with a role (viewer < operator < admin),
or the shared dashboard tokens, which act as a principal named ``token``: ``dashboard.token``
an operator, ``dashboard.readonly_token`` a viewer. A request proves who it is with
``Authorization: Bearer <token>`` (a user's API token or a shared token), with the session
cookie that ``POST /login`` sets, or, behind a single-sign-on proxy, with
``dashboard.trusted_header`` sent by one of ``dashboard.trusted_proxies``.

Sessions live in Postgres (``sessions``): the cookie carries a random id whose SHA-256 is the
row's key, so logging out, disabling or removing a user and changing a password end a
session on every node, and a restart brings none back. A shared-token session's cookie
also carries an HMAC keyed by that token, so rotating the token ends its sessions at once.

State-changing requests are POSTs and must (a) come from this origin (``Origin`` /
``Sec-Fetch-Site``) and (b) when authenticated by cookie or proxy, carry the CSRF token
derived from the session (form field ``csrf_token`` or header ``X-CSRF-Token``). Bearer
requests need no CSRF token: a browser never attaches that header on its own.

With no token configured the server listens on 127.0.0.1 only and everyone who can reach
it there is an operator ("local mode"), provided the Host header names the loopback
(a DNS-rebinding page cannot pass) and, for POSTs from a browser, the CSRF token matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
from aiohttp import web

from engine.core.accounts import LOCAL_ACTOR, SHARED_TOKEN_ACTOR, Role, check_name, token_digest
from engine.core.config import DashboardConfig
from engine.db.store import JobStore
from engine.web.throttle import LoginThrottle, TrustedProxies

COOKIE = "jobengine_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# What a session row records as its credential (never the credential itself).
SHARED = {Role.OPERATOR: "dashboard.token", Role.VIEWER: "dashboard.readonly_token"}
LOCAL = LOCAL_ACTOR
READ_ONLY = "read-only access: this action needs the operator role"
# Password checks (argon2id, 64 MiB each) running at once in this process.
HASH_SLOTS = 2


class AuthError(Exception):
    """Refused: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: ``name`` (a user, ``token`` or ``local``), its role, how it
    proved itself (``via``: bearer, session, sso or local) and, for a session, its id."""

    name: str
    role: Role
    via: str
    can_view_args: bool = False
    session: str | None = None
    csrf: str | None = None

    @property
    def can_act(self) -> bool:
        return self.role.allows(Role.OPERATOR)

    @property
    def is_admin(self) -> bool:
        return self.role.allows(Role.ADMIN)

    @property
    def sees_args(self) -> bool:
        """Operators act on jobs, so they see them whole; a viewer only with the flag."""
        return self.can_act or self.can_view_args

    def require(self, role: Role) -> None:
        if not self.role.allows(role):
            raise AuthError(403, READ_ONLY if role is Role.OPERATOR else f"this needs the {role} role")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_digest(session: str) -> bytes:
    return token_digest(f"session\0{session}")


class Auth:
    """Checks credentials for one dashboard.

    Example::

        auth = Auth(DashboardConfig(token="s3cret-operator-token"), store)
        principal = await auth.authenticate(request)   # raises AuthError(401) for bad credentials
        auth.check_unsafe(request, principal, csrf)     # POST: origin, CSRF, role
    """

    def __init__(self, settings: DashboardConfig, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.local_mode = not settings.token
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.throttle = LoginThrottle()
        self.hash_limiter = anyio.CapacityLimiter(HASH_SLOTS)
        tokens = {Role.OPERATOR: settings.token, Role.VIEWER: settings.readonly_token}
        self._tokens = {role: token for role, token in tokens.items() if token}
        # Keys for shared-token session cookies; in local mode a per-process key: those
        # sessions only carry a CSRF token and need not survive the process.
        self._keys = {SHARED[role]: hashlib.sha256(b"jobengine-session\0" + token.encode()).digest()
                      for role, token in self._tokens.items()}
        if self.local_mode:
            self._keys[LOCAL] = secrets.token_bytes(32)

    # --- credentials ------------------------------------------------------------------------

    def role_for_token(self, token: str) -> Role | None:
        """The role a shared token grants; constant-time in the token's content."""
        found = None
        for role, expected in self._tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = role
        return found

    async def _bearer(self, header: str) -> Principal:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise AuthError(401, "invalid bearer token")
        role = self.role_for_token(token)
        if role is not None:
            return Principal(SHARED_TOKEN_ACTOR, role, "bearer")
        user = await self.store.token_lookup(token_digest(token))
        if user is None:
            raise AuthError(401, "invalid bearer token (unknown, revoked, or its user is disabled)")
        return Principal(user["name"], Role(user["role"]), "bearer", user["can_view_args"])

    async def _single_sign_on(self, request: web.Request, name: str, session: Principal | None) -> Principal:
        header = self.settings.trusted_header
        if not self.proxies.trusts(request.remote):
            raise AuthError(403, f"{header} is believed only from dashboard.trusted_proxies; "
                                 f"this request came from {request.remote}")
        try:
            user = await self.store.user_get(check_name(name))
        except ValueError:
            user = None
        if user is None or user["disabled"]:
            raise AuthError(403, f"single sign-on: no enabled user named {name[:100]!r} "
                                 "(add one with `jobengine users add`)")
        principal = Principal(name, Role(user["role"]), "sso", user["can_view_args"])
        if session is not None and session.name == name:  # its CSRF token serves this user's forms
            principal = Principal(name, principal.role, "sso", principal.can_view_args, session.session, session.csrf)
        return principal

    # --- sessions ---------------------------------------------------------------------------

    async def new_session(self, name: str, role: Role, *, user: bool) -> tuple[str, Principal]:
        """A fresh session stored in Postgres: the cookie value and the principal."""
        session = secrets.token_urlsafe(24)
        credential = None if user else (LOCAL if name == LOCAL else SHARED[role])
        await self.store.session_add(session_digest(session), name if user else None, role.value, credential,
                                     self.settings.session_ttl)
        cookie = session if credential is None else f"{session}.{self._sign(credential, session)}"
        via = "local" if credential == LOCAL else "session"
        return cookie, Principal(name, role, via, False, session, self._csrf(session))

    async def read_session(self, cookie: str) -> Principal | None:
        session, _, signature = cookie.partition(".")
        if not 20 <= len(session) <= 64:
            return None
        found = await self.store.session_get(session_digest(session))
        if found is None:
            return None
        credential = found["credential"]
        if credential is not None:  # a shared token's or local mode's: its key must still sign it
            if credential not in self._keys or not hmac.compare_digest(signature, self._sign(credential, session)):
                return None
            if credential == LOCAL:
                return Principal(LOCAL, Role.OPERATOR, "local", False, session, self._csrf(session))
            return Principal(SHARED_TOKEN_ACTOR, Role(found["role"]), "session", False, session, self._csrf(session))
        if signature:  # a user's cookie is the bare id: anything else was not issued here
            return None
        return Principal(found["user_name"], Role(found["role"]), "session", found["can_view_args"], session,
                         self._csrf(session))

    async def end_session(self, principal: Principal) -> None:
        """Logout: the session ends on every node."""
        if principal.session:
            await self.store.session_end(session_digest(principal.session))

    def _sign(self, credential: str, session: str) -> str:
        return _b64(hmac.new(self._keys[credential], session.encode(), hashlib.sha256).digest())

    @staticmethod
    def _csrf(session: str) -> str:
        return _b64(hashlib.sha256(b"csrf\0" + session.encode()).digest())[:32]

    # --- request checks ---------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Principal | None:
        """The caller, or None when the request carries no credentials at all.
        Raises AuthError 401 for wrong credentials, 403 for a trusted header not to be believed."""
        header = request.headers.get("Authorization")
        if header is not None:
            return await self._bearer(header)
        cookie = request.cookies.get(COOKIE)
        principal = await self.read_session(cookie) if cookie else None
        trusted = self.settings.trusted_header
        if trusted and trusted in request.headers:
            return await self._single_sign_on(request, request.headers[trusted].strip(), principal)
        if principal is not None:
            return principal
        if self.local_mode:
            self.check_local(request)
            return Principal(LOCAL, Role.OPERATOR, "local")
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

    def check_unsafe(self, request: web.Request, principal: Principal, csrf_value: str | None,
                     *, needs: Role = Role.OPERATOR) -> None:
        """A POST that changes something: same origin, CSRF token (unless bearer), role."""
        self.check_origin(request)
        if principal.via == "local" and not self._browser_request(request):
            pass  # a non-browser client on the loopback (curl, scripts): nothing to forge
        elif principal.via != "bearer":
            supplied = csrf_value or request.headers.get(CSRF_HEADER) or ""
            if principal.csrf is None or not hmac.compare_digest(supplied.encode(), principal.csrf.encode()):
                raise AuthError(403, "CSRF token missing or invalid: reload the page and try again")
        principal.require(needs)

    @staticmethod
    def _browser_request(request: web.Request) -> bool:
        return any(h in request.headers for h in ("Origin", "Sec-Fetch-Site", "Cookie"))


def set_session_cookie(response: web.StreamResponse, request: web.Request, value: str, max_age: float) -> None:
    """HttpOnly, SameSite=Strict, Secure when served over TLS (directly or via a proxy)."""
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(COOKIE, value, httponly=True, samesite="Strict", secure=secure, path="/",
                        max_age=int(max_age))
