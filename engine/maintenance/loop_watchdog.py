"""A watchdog thread that notices a blocked event loop.

A handler that blocks the loop (``time.sleep``, a CPU-bound loop, a sync driver called from
``async def``) stops every other task of the node: heartbeats are not sent, so the lease
fence may stop its jobs and other nodes may rescue them. Nothing on the loop can notice
while it is blocked, so a plain thread does: every ``interval`` it hands the loop a tiny
probe (``call_soon_threadsafe``; the thread does no other asyncio work) and measures how
long the loop takes to run it. A probe late by ``threshold`` seconds is a stall: logged
once, as it happens, naming the jobs running then (one of them is the likely culprit),
and counted; its length is known once the probe finally runs. A stall is measured from
the probe's sending, so it may have begun up to ``interval`` earlier: lengths are lower bounds.

Example::

    watchdog = LoopWatchdog(threshold=1.0, running_jobs=lambda: [(42, "report")])
    watchdog.start(asyncio.get_running_loop())
    ...
    watchdog.stop()
    watchdog.stalls, watchdog.longest
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("jobengine.watchdog")

RunningJobs = Callable[[], Sequence[tuple[int, str]]]
# How many running jobs a stall's log line and a stopped job's reason name at most.
NAMED_JOBS = 10


@dataclass(slots=True)
class Stall:
    """One stall: when it began (monotonic), how long it lasted so far, the jobs running
    when it was noticed (id, kind), and when it ended (None while it lasts)."""

    began: float
    seconds: float
    jobs: Sequence[tuple[int, str]] = ()
    ended: float | None = None

    def describe(self) -> str:
        """E.g. ``the event loop was blocked for 2.0s (while job 42 (report) ran)``."""
        text = f"the event loop was blocked for {self.seconds:.1f}s"
        if self.jobs:
            named = ", ".join(f"{job_id} ({kind})" for job_id, kind in self.jobs[:NAMED_JOBS])
            text += f" (while job{'s' if len(self.jobs) > 1 else ''} {named} ran)"
        return text


@dataclass(slots=True)
class _Probe:
    """Run on the loop: records when it ran and wakes the thread."""

    ran: threading.Event = field(default_factory=threading.Event)
    at: float = 0.0

    def __call__(self) -> None:
        self.at = time.monotonic()
        self.ran.set()


class LoopWatchdog:
    """Measures the lag of ``loop`` from a thread; counts stalls over ``threshold`` seconds.

    ``stalls`` and ``longest`` (seconds) are read by ``/metrics``; :meth:`explain`
    tells the lease fence whether a stall explains a silence."""

    def __init__(self, *, threshold: float, running_jobs: RunningJobs, node: str = "",
                 interval: float = 0.25) -> None:
        if threshold <= 0:
            raise ValueError(f"stall threshold must be positive, not {threshold!r}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.threshold = threshold
        self.running_jobs = running_jobs
        self.node = node
        self.interval = interval
        self.stalls = 0
        self.longest = 0.0
        self.last: Stall | None = None
        self._stopping = threading.Event()
        self._probe: _Probe | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ``loop`` (the running one) from a new thread."""
        self.loop = loop
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"jobengine loop watchdog {self.node}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it wakes at once) and join it."""
        self._stopping.set()
        probe = self._probe
        if probe is not None:
            probe.ran.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1.0)
            self._thread = None

    def explain(self, silent_for: float) -> str | None:
        """Why heartbeats were not sent for the last ``silent_for`` seconds, when a stall
        lasting still or ended within them explains it (else None)."""
        stall = self.last
        if stall is None or (stall.ended is not None and time.monotonic() - stall.ended > silent_for):
            return None
        return stall.describe()

    def _run(self) -> None:
        assert self.loop is not None
        while not self._stopping.is_set():
            probe = self._probe = _Probe()
            sent = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(probe)
            except RuntimeError:  # the loop is closed: nothing left to watch
                return
            stall: Stall | None = None
            while not probe.ran.wait(self.interval):
                lag = time.monotonic() - sent
                if stall is None and lag >= self.threshold:
                    stall = self._begin(sent, lag)
                if stall is not None:
                    stall.seconds = lag
                    self.longest = max(self.longest, lag)
            if stall is not None and not self._stopping.is_set():
                self._end(stall, probe.at - sent)
            self._stopping.wait(self.interval)

    def _begin(self, sent: float, lag: float) -> Stall:
        stall = Stall(began=sent, seconds=lag, jobs=self._snapshot())
        self.last = stall
        self.stalls += 1
        log.warning("event loop blocked: a handler or callback is not yielding; heartbeats and other jobs wait",
                    node=self.node, blocked_for=round(lag, 2), threshold=self.threshold, stalls=self.stalls,
                    jobs=[{"id": job_id, "kind": kind} for job_id, kind in stall.jobs[:NAMED_JOBS]])
        return stall

    def _end(self, stall: Stall, seconds: float) -> None:
        stall.seconds = seconds
        stall.ended = time.monotonic()
        self.longest = max(self.longest, seconds)
        log.info("event loop responsive again", node=self.node, blocked_for=round(seconds, 2),
                 job_ids=[job_id for job_id, _ in stall.jobs[:NAMED_JOBS]])

    def _snapshot(self) -> Sequence[tuple[int, str]]:
        # Read from this thread while the loop is blocked, so the producers' dicts hold
        # still; should one change under the read anyway, read again.
        for _ in range(3):
            try:
                return list(self.running_jobs())
            except RuntimeError:
                continue
        return ()
