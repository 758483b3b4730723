"""Postgres URLs for tests: the session server's URL with another user."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def as_user(url: str, user: str) -> str:
    """``url`` logging in as ``user`` (no password), for TCP and Unix-socket URLs alike
    (``postgresql://postgres:@/postgres?host=/dir`` has no ``postgres@`` to replace)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))
