"""Query plans as the engine really gets them, for the EXPLAIN tests.

``EXPLAIN <statement>`` with bound parameters always plans with their values (a custom
plan), whatever ``plan_cache_mode`` says. Only ``EXECUTE`` of a prepared statement honours
it, and a generic plan is what asyncpg's cached statements end up with when Postgres finds
it no costlier: so :func:`explain` prepares the statement and explains its EXECUTE.

Example::

    plan = await explain(conn, statements.JOB_FETCH_AVAILABLE, "default", 32, "node-1",
                         mode="force_generic_plan", analyze=True)
    assert ("Index Scan", "jobs_fetch_idx") in scans(plan)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg


async def _literals(conn: asyncpg.Connection, text: str, args: tuple[Any, ...]) -> list[str]:
    """Each argument as an SQL literal of its parameter's type (the server quotes it)."""
    parameters = (await conn.prepare(text)).get_parameters()
    literals = []
    for parameter, value in zip(parameters, args, strict=True):
        sql_type = await conn.fetchval("SELECT format_type($1::oid, NULL)", parameter.oid)
        quoted = await conn.fetchval(f"SELECT quote_nullable($1::{sql_type})", value)
        literals.append(f"{quoted}::{sql_type}")
    return literals


async def explain(conn: asyncpg.Connection, text: str, *args: Any, mode: str = "auto",
                  analyze: bool = False) -> dict[str, Any]:
    """The JSON plan (top node) of ``text`` executed as a prepared statement under
    ``plan_cache_mode = mode``. With ``analyze`` it really runs, in a transaction rolled back."""
    name = f"explained_{uuid.uuid4().hex[:12]}"
    literals = await _literals(conn, text, args)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    await conn.execute(f"PREPARE {name} AS {text}")
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        arguments = f"({', '.join(literals)})" if literals else ""
        raw = await conn.fetchval(f"EXPLAIN ({options}) EXECUTE {name}{arguments}")
    finally:
        await transaction.rollback()
        await conn.execute(f"DEALLOCATE {name}")
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, index) of every scan of ``jobs`` or of one of its indexes in a JSON plan;
    a Bitmap Heap Scan is counted through its Bitmap Index Scan children."""
    found = []
    on_jobs = node.get("Relation Name") == "jobs" or str(node.get("Index Name", "")).startswith("jobs_")
    if on_jobs and node["Node Type"].endswith("Scan") and node["Node Type"] != "Bitmap Heap Scan":
        found.append((node["Node Type"], node.get("Index Name")))
    for child in node.get("Plans", []):
        found.extend(scans(child))
    return found
