"""Live updates pushed to open pages: ``GET /events``, a server-sent event stream.

The hub hears what changes jobs: the LISTEN notifications this node's supervisor receives
(inserts, retries, rescues, control messages from any node), this process's job starts and
finishes, and, for what other nodes finish (they notify nobody), a look at the shared
overview snapshot once per refresh interval while any page listens: one read per interval
per node, however many browsers are open. Bursts are coalesced (``debounce``): a page gets
at most one ``change`` event per debounce window, naming what changed, and fetches its
fragments then. Pages fall back to polling while the stream is down.

Example::

    add_routes(app, engine, snapshots, interval=2.0)   # GET /events, run with the app
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp_sse import sse_response

from engine.core.events import JobEvent
from engine.engine import Engine
from engine.web.snapshot import Overview, Snapshots

log = structlog.get_logger("jobengine.web")
MAX_BACKLOG = 16  # a page this far behind gets one "resync" instead of the queue
DEBOUNCE = 0.1  # seconds a burst of changes is gathered before one event goes out
PING_INTERVAL = 15.0  # a comment line this often keeps proxies open and finds closed pages
RECONNECT_MS = 2000  # how soon a browser reconnects a dropped stream
LIVE_EVENTS = ("job.start", "job.stop", "job.log")  # what changes an open page


def fingerprint(overview: Overview) -> tuple[object, ...]:
    """What the overview shows that can change without a notification reaching this node."""
    counts = tuple((q.name, q.paused, q.concurrency, tuple(c.value for c in q.counts.values()))
                   for q in overview.queues)
    nodes = tuple(sorted(str(n["name"]) for n in overview.nodes))
    alerts = tuple(sorted((name, str(row["state"])) for name, row in overview.alert_states.items()))
    return counts, nodes, len(overview.departed), alerts


class LiveHub:
    """Fans 'something changed' out to every open event stream, coalesced."""

    def __init__(self, engine: Engine, snapshots: Snapshots, *, debounce: float, interval: float) -> None:
        self.engine = engine
        self.snapshots = snapshots
        self.debounce = debounce
        self.interval = interval
        self.clients: set[asyncio.Queue[list[str] | None]] = set()
        self._topics: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._detach: list[Callable[[], None]] = []
        self._job_events: Callable[[], None] | None = None  # unsubscribes, while a page listens
        self.sent = 0  # events broadcast (for tests and the debug log)
        self._last_sent = float("-inf")

    # --- what feeds it ---------------------------------------------------------------------

    def changed(self, topic: str) -> None:
        """Note a change (``insert:mail``, ``job:default``, ``overview``); cheap, never blocks."""
        if self.clients:
            self._topics.add(topic)
            self._wake.set()

    def _on_notification(self, topic: str, detail: str) -> None:
        self.changed(f"{topic}:{detail}")

    def _on_job_event(self, event: JobEvent) -> None:
        if event.name in ("job.start", "job.stop"):
            self.changed(f"job:{event.queue}")
        elif event.name == "job.log":  # a running attempt logged or reported progress
            self.changed(f"log:{event.job_id}")

    def _hear_jobs(self) -> None:
        """Job starts and stops, two events per job, are heard only while a page listens: a
        dashboard nobody has open (Prometheus scraping /metrics) costs the jobs nothing here."""
        if self._job_events is None:
            self._job_events = self.engine.events.subscribe(self._on_job_event, names=LIVE_EVENTS)

    def _stop_hearing_jobs(self) -> None:
        if self._job_events is not None:
            self._job_events()
            self._job_events = None

    async def start(self, _app: web.Application | None = None) -> None:
        self._detach = [self.engine.watch_changes(self._on_notification)]
        self._tasks = [asyncio.create_task(self._broadcast(), name="dashboard live broadcast"),
                       asyncio.create_task(self._watch_overview(), name="dashboard live overview")]

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop feeding and end every open stream (so shutdown does not wait for them)."""
        for detach in self._detach:
            detach()
        self._stop_hearing_jobs()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.clients:
            client.put_nowait(None)

    async def _broadcast(self) -> None:
        """Coalesce a burst (``debounce``), and send at most one event per ``interval``: the
        first change after a quiet spell goes out at once, a busy queue's at the interval. The
        overview snapshot is dropped before each event, so the pages' fetches that follow see
        the change (not a cached view from before it) and rebuild it once between them."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce)
            spacing = self._last_sent + self.interval - asyncio.get_running_loop().time()
            if spacing > 0:
                await asyncio.sleep(spacing)
            self._wake.clear()
            topics, self._topics = sorted(self._topics), set()
            if not topics:
                continue
            self.snapshots.invalidate()
            self._last_sent = asyncio.get_running_loop().time()
            self.sent += 1
            for client in list(self.clients):
                if client.qsize() >= MAX_BACKLOG:
                    while not client.empty():
                        client.get_nowait()
                    topics_for_client = ["resync"]
                else:
                    topics_for_client = topics
                client.put_nowait(topics_for_client)

    async def _watch_overview(self) -> None:
        """Changes other nodes make reach no notification here: compare the (shared, cached)
        overview once per interval while any page listens."""
        last: tuple[object, ...] | None = None
        while True:
            await asyncio.sleep(self.interval)
            if not self.clients:
                last = None
                continue
            if asyncio.get_running_loop().time() - self._last_sent < self.interval:
                continue  # an event just went out: the pages are fetching a fresh overview anyway
            try:
                now = fingerprint(await self.snapshots.overview())
            except Exception as exc:  # the database is away: pages keep their last view
                log.warning("live overview check failed", error=str(exc))
                continue
            if last is not None and now != last:
                self.changed("overview")
            last = now

    # --- the stream ------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /events``: ``event: change`` with ``data: ["insert:mail", ...]`` per burst."""
        queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self.clients.add(queue)
        self._hear_jobs()
        try:
            async with sse_response(request, ping_interval=PING_INTERVAL) as response:
                await response.send(json.dumps(["hello"]), event="ready", retry=RECONNECT_MS)
                closed = asyncio.ensure_future(response.wait())  # ends when a ping finds the page gone
                try:
                    while (topics := await _next(queue, closed)) is not None:
                        await response.send(json.dumps(topics), event="change")
                except (ConnectionResetError, TimeoutError):
                    pass  # the page went away mid-send
                finally:
                    closed.cancel()
            return response
        finally:
            self.clients.discard(queue)
            if not self.clients:
                self._stop_hearing_jobs()


async def _next(queue: asyncio.Queue[list[str] | None], closed: asyncio.Future[None]) -> list[str] | None:
    """The next topics for this page; None when the hub closes or the page is gone."""
    getter = asyncio.ensure_future(queue.get())
    waits: set[asyncio.Future[Any]] = {getter, closed}
    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if getter not in done:
        getter.cancel()
        return None
    return getter.result()


LIVE = web.AppKey("live", LiveHub)


def add_routes(app: web.Application, engine: Engine, snapshots: Snapshots, interval: float) -> None:
    """Create the hub, run it with the application, and serve ``GET /events``."""
    hub = LiveHub(engine, snapshots, debounce=DEBOUNCE, interval=interval)
    app[LIVE] = hub
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.close)
    app.router.add_get("/events", hub.stream)
