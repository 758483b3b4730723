"""The alerts page, ``GET /api/alerts`` and the ``jobengine_alerts_firing`` gauge: every
alert of the config with its state (ok, pending, firing), since when, its last value, its
threshold and its recent history (README, "Alerts"). Read from the shared overview snapshot,
so open pages cost Postgres one read per refresh interval. Where notifications go is shown
only as "email" / "webhook": an address or a URL with a token in it stays in the config.

Example::

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/alerts
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from engine.core.alerts import describe_value
from engine.core.config import AlertConfig, Config
from engine.web.context import ENGINE, SNAPSHOTS, render
from engine.web.metrics import Gauge
from engine.web.snapshot import Overview

HISTORY_SHOWN = 50  # transitions in the page's history table, all alerts together


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _targets(alert: AlertConfig, config: Config) -> list[str]:
    """Which kinds of target the alert notifies (its own, else failure_notification's)."""
    target = alert.notify.model_dump() if alert.notify is not None else (config.failure_notification or {})
    return [kind for kind in ("email", "webhook") if target.get(kind)]


def _transition(row: dict[str, Any], metric: str) -> dict[str, Any]:
    return {"event": row["event"], "at": _when(row["at"]), "value": row["value"],
            "value_text": describe_value(metric, row["value"]), "threshold": row["threshold"],
            "threshold_text": describe_value(metric, row["threshold"]),
            "detail": row["detail"]}


def alert_views(overview: Overview, config: Config) -> list[dict[str, Any]]:
    """Each configured alert as the page and the API show it."""
    views = []
    for alert in config.alerts:
        stored = overview.alert_states.get(alert.name) or {}
        views.append({
            "name": alert.name, "metric": alert.metric, "queue": alert.queue, "definition": alert.definition,
            "threshold": alert.limit, "threshold_text": describe_value(alert.metric, alert.limit),
            "for_seconds": alert.for_, "notify": _targets(alert, config),
            "state": stored.get("state", "ok"), "since": _when(stored.get("since")),
            "value": stored.get("value"), "value_text": describe_value(alert.metric, stored.get("value")),
            "detail": stored.get("detail") or {}, "evaluated_at": _when(stored.get("evaluated_at")),
            "history": [_transition(row, alert.metric) for row in overview.alert_history.get(alert.name, [])],
        })
    return views


def alerts_document(overview: Overview, config: Config) -> dict[str, Any]:
    """``GET /api/alerts``: the alerts, how often they are evaluated, and when this was read."""
    return {"taken_at": overview.taken_at.isoformat(), "interval_seconds": config.alerts_interval,
            "alerts": alert_views(overview, config)}


def firing(overview: Overview, config: Config) -> list[dict[str, Any]]:
    """The alerts firing now (the overview's banner)."""
    return [view for view in alert_views(overview, config) if view["state"] == "firing"]


def alert_gauges(overview: Overview, config: Config) -> list[Gauge]:
    """``jobengine_alerts_firing{alert=...}``: 1 while the alert fires, else 0."""
    if not config.alerts:
        return []
    return [Gauge("jobengine_alerts_firing", "1 while the alert fires (README, \"Alerts\"), else 0.",
                  {(("alert", view["name"]),): float(view["state"] == "firing")
                   for view in alert_views(overview, config)})]


def _history(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{**row, "alert": view["name"], "metric": view["metric"]} for view in views for row in view["history"]]
    return sorted(rows, key=lambda row: row["at"] or "", reverse=True)[:HISTORY_SHOWN]


async def _document(request: web.Request) -> dict[str, Any]:
    return alerts_document(await request.app[SNAPSHOTS].overview(), request.app[ENGINE].config)


async def alerts_page(request: web.Request) -> web.Response:
    doc = await _document(request)
    return render(request, "alerts.html", {"nav": "alerts", "notice": None, "doc": doc,
                                           "history": _history(doc["alerts"])})


async def alerts_partial(request: web.Request) -> web.Response:
    doc = await _document(request)
    return render(request, "_alerts.html", {"doc": doc, "history": _history(doc["alerts"])})


async def alerts_api(request: web.Request) -> web.Response:
    return web.json_response(await _document(request))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/alerts", alerts_page)
    app.router.add_get("/partials/alerts", alerts_partial)
    app.router.add_get("/api/alerts", alerts_api)
