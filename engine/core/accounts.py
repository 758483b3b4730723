"""Accounts without I/O: roles and what each may do, user and token names, passwords
(argon2id through argon2-cffi) and API tokens (random; only their SHA-256 is ever stored).

Example::

    role = Role.parse("operator")              # ValueError naming the choices otherwise
    stored = hash_password("correct horse")    # '$argon2id$v=19$...'
    verify_password(stored, "correct horse")   # True
    token = new_token()                        # 'je_...' shown once; keep token_digest(token)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_NAME = 100
MAX_PASSWORD = 1024
TOKEN_PREFIX = "je_"
# The name the shared dashboard tokens (dashboard.token, readonly_token) act under, and the
# one of local mode (no token configured, loopback only).
SHARED_TOKEN_ACTOR = "token"
LOCAL_ACTOR = "local"

# argon2-cffi's defaults are RFC 9106's second recommendation (argon2id, 64 MiB, t=3).
_HASHER = PasswordHasher()


class Role(StrEnum):
    """What a caller may do; each role may do everything the roles before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"role: {value!r} is not one of {', '.join(r.value for r in cls)}") from None

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


def check_name(name: str, what: str = "user name") -> str:
    """A user or token name: 1 to 100 printable characters, no surrounding spaces."""
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"{what}: 1 to {MAX_NAME} characters")
    bad = next((c for c in name if unicodedata.category(c)[0] in "CZ" and c != " "), None)
    if bad is not None:
        raise ValueError(f"{what}: control or separator characters are not allowed (found U+{ord(bad):04X})")
    if name != name.strip():
        raise ValueError(f"{what}: no leading or trailing spaces")
    if "/" in name or "\\" in name:
        raise ValueError(f"{what}: '/' and '\\' are not allowed (names are parts of URLs)")
    if what == "user name" and (name.startswith("cli:") or name in (SHARED_TOKEN_ACTOR, LOCAL_ACTOR)):
        raise ValueError(f"{what}: {name!r} is reserved for the audit log's actors")
    return name


def check_password(password: str) -> str:
    if not password:
        raise ValueError("password: must not be empty")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password: at most {MAX_PASSWORD} characters")
    if any(c in password for c in "\x00\r\n"):
        raise ValueError("password: NUL and line breaks are not allowed")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash to store for ``password`` (checked first)."""
    return _HASHER.hash(check_password(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash, still spends the time
    of one check, so a response's delay does not tell which names exist."""
    if stored is None:
        with contextlib.suppress(VerificationError):
            _HASHER.verify(_dummy_hash(), password or "-")
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def new_token() -> str:
    """A new API token: 32 random bytes, with a prefix that secret scanners can match."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What is stored for a token: SHA-256 (the token is random, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).digest()



@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log: who (``actor`` and the ``role`` they acted in) did what
    (``action``, e.g. ``job.retry``) to which ``target`` (``job:42``), with ``details``.

    Example::

        AuditEntry("alice", "operator", "job.bulk", None, {"filter": {"state": "discarded"}, "count": 12})
    """

    actor: str
    role: str
    action: str
    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
