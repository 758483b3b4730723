"""The overview every page, the API and /metrics share: queues with counts per state,
controls, oldest wait and throughput. Built at most once per refresh interval however many
browsers poll, so N open dashboards cost Postgres what one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

import anyio

from engine.engine import Engine
from engine.web.present import GROUPS, STATES, count_text
from engine.web.stores import job_store

THROUGHPUT_MINUTES = 60
ALERT_HISTORY = 20  # transitions kept per alert in the snapshot (the alerts page and API)


class Point(TypedDict):
    """Jobs that finished in one minute (UTC), completed or failed."""

    minute: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class Count:
    """A job count; ``exact`` False means the planner's estimate (above the count cap)."""

    value: int
    exact: bool = True

    def __str__(self) -> str:
        return count_text(self.value, self.exact)

    def __add__(self, other: Count) -> Count:
        return Count(self.value + other.value, self.exact and other.exact)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.value, "exact": self.exact}


@dataclass(slots=True)
class QueueView:
    """One queue as the overview shows it."""

    name: str
    counts: dict[str, Count]
    paused: bool
    concurrency: int | None
    configured: bool
    nodes: int
    oldest_wait: float | None
    no_consumer: bool = False  # waiting jobs, and no live node runs this queue

    def group(self, name: str) -> Count:
        total = Count(0)
        for state in GROUPS[name]:
            total += self.counts[state]
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "paused": self.paused, "concurrency": self.concurrency, "nodes": self.nodes,
            "configured": self.configured, "oldest_available_seconds": self.oldest_wait,
            "no_consumer": self.no_consumer,
            "counts": {state: count.value for state, count in self.counts.items()},
            "exact": all(count.exact for count in self.counts.values()),
            "groups": {group: self.group(group).value for group in GROUPS},
        }


@dataclass(slots=True)
class Overview:
    queues: list[QueueView]
    throughput: list[Point]
    nodes: list[dict[str, Any]]  # live: heartbeat within the rescue window
    silent: list[dict[str, Any]] = field(default_factory=list)  # heartbeat older: presumed dead
    departed: list[dict[str, Any]] = field(default_factory=list)  # stopped or lost, the last day
    # The config's alerts (migration 011): stored states by name, recent transitions by name.
    alert_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def group(self, name: str) -> Count:
        total = Count(0)
        for queue in self.queues:
            total += queue.group(name)
        return total

    @property
    def peak(self) -> int:
        return max([1, *(point["completed"] + point["failed"] for point in self.throughput)])

    def per_minute(self, key: Literal["completed", "failed"], minutes: int = 5) -> float:
        """Average per minute over the last ``minutes`` full minutes."""
        recent = self.throughput[-minutes - 1:-1]
        return sum(point[key] for point in recent) / max(1, len(recent))

    @property
    def firing(self) -> list[tuple[str, dict[str, Any]]]:
        """The alerts firing now, by name, with their stored state (the overview's banner)."""
        return [(name, row) for name, row in self.alert_states.items() if row["state"] == "firing"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(), "queues": [q.as_dict() for q in self.queues],
            "groups": {group: self.group(group).value for group in GROUPS},
            "throughput": [{**p, "minute": p["minute"].isoformat()} for p in self.throughput],
            "nodes": [{"name": n["name"], "queues": list(n["queues"] or []),
                       "heartbeat_at": n["heartbeat_at"].isoformat()} for n in self.nodes],
        }


class Snapshots:
    """Caches the :class:`Overview` for ``ttl`` seconds.

    Example::

        snapshots = Snapshots(engine, ttl=2.0, cap=10_000)
        overview = await snapshots.overview()
    """

    def __init__(self, engine: Engine, *, ttl: float, cap: int) -> None:
        self.engine = engine
        self.ttl = ttl
        self.cap = cap
        self._cached: tuple[float, int, Overview] | None = None  # (built at, generation, overview)
        self._generation = 0
        self._lock = anyio.Lock()

    def invalidate(self) -> None:
        """Forget the cache (after an action or a pushed change, so the next page shows it).
        A build already under way when this is called does not count as fresh."""
        self._generation += 1

    async def overview(self) -> Overview:
        async with self._lock:
            cached = self._cached
            if cached is None or cached[1] != self._generation or time.monotonic() - cached[0] >= self.ttl:
                generation = self._generation
                self._cached = cached = (time.monotonic(), generation, await self._build())
            return cached[2]

    async def _build(self) -> Overview:
        queue = job_store(self.engine)
        controls = await queue.queue_controls()
        rows, departed = await queue.dashboard_nodes()
        window = self.engine.config.lifeline.rescue_after
        nodes = [row for row in rows if row["heartbeat_age"] <= window]
        live = {row["name"] for row in nodes}
        configured = self.engine.config.queues
        names = sorted(set(configured) | set(controls) | set(await queue.dashboard_queue_names())
                       | {name for node in nodes for name in (node["queues"] or [])})
        counts = await queue.dashboard_counts(names, self.cap)
        oldest = await queue.dashboard_oldest_available(names)
        views = []
        for name in names:
            control = controls.get(name, {})
            settings = configured.get(name)
            views.append(QueueView(
                name=name,
                counts={state: Count(*counts.get(name, {}).get(state, (0, True))) for state in STATES},
                paused=bool(control.get("paused", settings.paused if settings else False)),
                concurrency=control.get("concurrency") or (settings.concurrency if settings else None),
                configured=settings is not None,
                nodes=sum(1 for node in nodes if name in (node["queues"] or [])),
                oldest_wait=oldest.get(name)))
            views[-1].no_consumer = views[-1].nodes == 0 and views[-1].counts["available"].value > 0
        throughput = _fill_minutes(await queue.dashboard_throughput(THROUGHPUT_MINUTES))
        departed = [row for row in departed if row["name"] not in live]
        gone = {row["name"] for row in departed}  # a lost node whose jobs were rescued shows there
        silent = [row for row in rows if row["name"] not in live and row["name"] not in gone]
        alerts = [alert.name for alert in self.engine.config.alerts]
        stored = await queue.alert_states() if alerts else {}
        states = {name: stored[name] for name in alerts if name in stored}  # not alerts since removed
        history = await queue.alert_history(alerts, ALERT_HISTORY) if alerts else {}
        return Overview(views, throughput, nodes, silent, departed, states, history)


def _fill_minutes(points: list[dict[str, Any]]) -> list[Point]:
    """One point per minute of the window, zeros where nothing finished."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    by_minute = {p["minute"]: p for p in points}
    filled: list[Point] = []
    for offset in range(THROUGHPUT_MINUTES - 1, -1, -1):
        minute = now - timedelta(minutes=offset)
        point = by_minute.get(minute, {})
        filled.append({"minute": minute, "completed": int(point.get("completed", 0)),
                       "failed": int(point.get("failed", 0))})
    return filled
