"""History charts: ``GET /api/charts?range=1h|24h|7d&queue=&kind=`` from job_rollup
(migration 010), drawn on the overview by the vendored uPlot (static/charts.js).

Per step (a minute over 1 h, 15 minutes over 24 h, two hours over 7 d): jobs completed and
failed (discarded), the failure rate (discarded of completed + discarded), and wait time
(scheduled -> started) and run time (started -> finished) at p50, p95 and p99, read from the
rollup's histograms: a percentile is the upper bound of the bucket it falls in.

Example::

    curl -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8080/api/charts?range=24h&queue=mail'
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from engine.db.sql import ROLLUP_BUCKET_BOUNDS_MS
from engine.web.actions import BadRequest
from engine.web.context import ENGINE
from engine.web.stores import job_store

RANGES = {"1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 7200)}  # span, step (seconds)
QUANTILES = (0.5, 0.95, 0.99)
# The filters' queue and kind names of the last week: a DISTINCT over a week of rollup rows
# (216 ms at 20 pairs) for a list that changes when a new kind first runs. Kept a minute.
NAMES_TTL = 60.0
SERIES_KEPT = 64


class _ChartCache:
    def __init__(self) -> None:
        self.read_at = -NAMES_TTL
        self.names: list[tuple[str, str]] = []
        # Series by (range, queue, kind, first step, rollup mark): rollup rows before the mark
        # are final, so while the mark stands a chart is the same (a week's chart reads
        # 200,000 rows at 20 queue/kind pairs; every open dashboard asks for it).
        self.series: dict[tuple[Any, ...], dict[str, Any]] = {}


CHART_CACHE: web.AppKey[_ChartCache] = web.AppKey("chart_cache", _ChartCache)


async def _names(request: web.Request) -> list[tuple[str, str]]:
    cache = request.app[CHART_CACHE]
    if time.monotonic() - cache.read_at >= NAMES_TTL:
        cache.names = await job_store(request.app[ENGINE]).rollup_names()
        cache.read_at = time.monotonic()
    return cache.names


def percentile(histogram: list[int], quantile: float) -> float | None:
    """The upper bound (ms) of the bucket holding ``quantile`` of the counts; the last
    bucket (an hour or more) reports its lower bound. None: no counts."""
    total = sum(histogram)
    if total == 0:
        return None
    wanted, running = quantile * total, 0
    for index, count in enumerate(histogram):
        running += count
        if running >= wanted and count:
            return float(ROLLUP_BUCKET_BOUNDS_MS[min(index, len(ROLLUP_BUCKET_BOUNDS_MS) - 1)])
    return float(ROLLUP_BUCKET_BOUNDS_MS[-1])


def _series(steps: list[datetime], counts: list[dict[str, Any]], histograms: list[dict[str, Any]],
            mark: datetime | None) -> dict[str, Any]:
    """One value per step for each series; None where the rollup has not got to yet."""
    by_step = {row["t"]: row for row in counts}
    buckets = len(ROLLUP_BUCKET_BOUNDS_MS) + 1
    waits: dict[datetime, list[int]] = {}
    runs: dict[datetime, list[int]] = {}
    for row in histograms:
        waits.setdefault(row["t"], [0] * buckets)[row["bucket"] - 1] = int(row["waits"])
        runs.setdefault(row["t"], [0] * buckets)[row["bucket"] - 1] = int(row["runs"])
    out: dict[str, Any] = {"t": [int(step.timestamp()) for step in steps], "completed": [], "failed": [],
                           "failure_rate": []}
    for name in ("wait", "run"):
        for q in QUANTILES:
            out[f"{name}_p{int(q * 100)}"] = []
    for step in steps:
        if mark is not None and step >= mark:  # not rolled up yet: no data, rather than a false zero
            for values in list(out.values())[1:]:
                values.append(None)
            continue
        row = by_step.get(step, {})
        done, failed = int(row.get("completed", 0)), int(row.get("discarded", 0))
        out["completed"].append(done)
        out["failed"].append(failed)
        out["failure_rate"].append(round(100 * failed / (done + failed), 2) if done + failed else None)
        for name, table in (("wait", waits), ("run", runs)):
            for q in QUANTILES:
                out[f"{name}_p{int(q * 100)}"].append(percentile(table.get(step, []), q))
    return out


async def chart_data(request: web.Request) -> web.Response:
    name = request.query.get("range", "1h")
    if name not in RANGES:
        raise BadRequest(f"range: must be one of {', '.join(RANGES)}")
    span, step = RANGES[name]
    queue = request.query.get("queue") or None
    kind = request.query.get("kind") or None
    now = datetime.now(UTC)
    since = datetime.fromtimestamp((now.timestamp() - span) // step * step + step, UTC)
    store = job_store(request.app[ENGINE])
    mark = await store.rollup_mark()
    cache = request.app[CHART_CACHE].series
    key = (name, queue, kind, since, mark)
    series = cache.get(key)
    if series is None:
        counts, histograms = await store.rollup_chart(step=step, since=since, queue=queue, kind=kind)
        steps = [since + timedelta(seconds=step * i) for i in range(int(span // step))]
        series = _series(steps, counts, histograms, mark)
        if len(cache) >= SERIES_KEPT:
            cache.clear()
        cache[key] = series
    names = await _names(request)
    return web.json_response({
        "range": name, "step_seconds": step, "since": since.isoformat(), "queue": queue, "kind": kind,
        "queues": sorted({q for q, _ in names}), "kinds": sorted({k for _, k in names}),
        "rolled_until": mark.isoformat() if mark else None,
        "series": series})


def add_routes(app: web.Application) -> None:
    app[CHART_CACHE] = _ChartCache()
    app.router.add_get("/api/charts", chart_data)
