"""Connections with jobengine's JSON codecs, for the pool and for single connections."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one, not one per call


def json_text(value: Any) -> str:
    """Compact JSON for a jsonb parameter."""
    return _JSON_ENCODER.encode(value)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool init hook: json and jsonb travel as Python values."""
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(pg_type, encoder=json_text, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook. asyncpg's default runs a reset query (``RESET ALL; UNLISTEN *;
    CLOSE ALL; pg_advisory_unlock_all()``): one more round trip after every fetch and ack.
    jobengine leaves no session state on pooled connections (LISTEN has its own
    connection, advisory locks are transaction-scoped), and asyncpg still rolls back an
    open transaction before this hook runs, so skipping the query is safe."""


async def open_connection(url: str, *, timeout: float = 10.0,
                          application_name: str = "jobengine") -> asyncpg.Connection:
    """A single connection with jobengine's JSON codecs; every query on it times out
    after ``timeout`` seconds, so a silent connection cannot hang its user."""
    conn = await asyncpg.connect(url, timeout=timeout, command_timeout=timeout,
                                 server_settings={"application_name": application_name[:63]})
    await init_connection(conn)
    return conn
