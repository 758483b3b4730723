"""The nodes page and ``GET /api/nodes``: every live node (host, pid, version, start time,
heartbeat age, its queues with concurrency and running jobs), the nodes that fell silent or
departed in the last day, and the jobs rescued from them. Read from the shared overview
snapshot, so open pages cost Postgres one read per refresh interval.

Example::

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/nodes
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from engine.web.context import ENGINE, SNAPSHOTS, render
from engine.web.snapshot import Overview


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("meta") or {}
    return {"name": row["name"], "host": meta.get("host"), "pid": meta.get("pid"), "version": meta.get("version"),
            "started_at": _when(row.get("started_at")), "heartbeat_at": _when(row.get("heartbeat_at"))}


def _queues(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's queues as its last heartbeat described them (an engine older than this
    page sends only the names)."""
    described = (row.get("meta") or {}).get("queues") or {}
    return [{"name": name, "concurrency": described.get(name, {}).get("concurrency"),
             "running": described.get(name, {}).get("running"), "paused": described.get(name, {}).get("paused")}
            for name in (row.get("queues") or [])]


def live_node(row: dict[str, Any]) -> dict[str, Any]:
    return {**_identity(row), "heartbeat_age_seconds": round(row["heartbeat_age"], 1), "queues": _queues(row),
            "running": sum(q["running"] or 0 for q in _queues(row))}


def silent_node(row: dict[str, Any]) -> dict[str, Any]:
    return {**_identity(row), "heartbeat_age_seconds": round(row["heartbeat_age"], 1), "queues": _queues(row)}


def departed_node(row: dict[str, Any]) -> dict[str, Any]:
    return {**_identity(row), "departed_at": _when(row["departed_at"]), "reason": row["reason"],
            "departed_age_seconds": round(row["departed_age"], 1), "rescued": row["rescued"],
            "rescued_ids": list(row["rescued_ids"] or []), "queues": list(row.get("queues") or [])}


def nodes_document(overview: Overview, rescue_after: float) -> dict[str, Any]:
    """What the page and the API show: ``nodes`` (live), ``silent`` (heartbeat older than
    ``rescue_after``: their jobs are being rescued) and ``departed``."""
    return {"taken_at": overview.taken_at.isoformat(), "rescue_after_seconds": rescue_after,
            "nodes": [live_node(row) for row in overview.nodes],
            "silent": [silent_node(row) for row in overview.silent],
            "departed": [departed_node(row) for row in overview.departed]}


async def _document(request: web.Request) -> dict[str, Any]:
    overview = await request.app[SNAPSHOTS].overview()
    return nodes_document(overview, request.app[ENGINE].config.lifeline.rescue_after)


async def nodes_page(request: web.Request) -> web.Response:
    return render(request, "nodes.html", {"nav": "nodes", "notice": None, "doc": await _document(request)})


async def nodes_partial(request: web.Request) -> web.Response:
    return render(request, "_nodes.html", {"doc": await _document(request)})


async def nodes_api(request: web.Request) -> web.Response:
    return web.json_response(await _document(request))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/nodes", nodes_page)
    app.router.add_get("/partials/nodes", nodes_partial)
    app.router.add_get("/api/nodes", nodes_api)
