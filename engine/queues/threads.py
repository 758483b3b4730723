"""Thread pools for sync handlers: a plain ``def`` handler runs in a worker thread, at most
the queue's concurrency at once on this node (one :class:`anyio.CapacityLimiter` per queue).

A thread cannot be killed. When a sync handler outlives its timeout (or its job is cancelled
or the engine stops), the attempt ends at once, its slot is freed and the job is retried as
for an async handler, but the thread runs on until the function returns. Such threads are
*stragglers*: counted here so ``/metrics`` shows them (``jobengine_sync_stragglers``), and their
late return value is dropped.

Example::

    pools = ThreadPools()
    pools.resize("default", 10)
    value = await pools.run("default", report, job)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

# A queue this node does not run (perform_job, drain, inline mode) gets a pool of this size.
DEFAULT_THREADS = 10


class ThreadPools:
    """One bounded pool per queue, and the count of abandoned threads still running."""

    def __init__(self) -> None:
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._lock = threading.Lock()
        self._stragglers = 0
        self._abandoned = 0

    def resize(self, queue: str, threads: int) -> None:
        """Size ``queue``'s pool (the queue's concurrency; called again on ``scale``)."""
        limiter = self._limiters.get(queue)
        if limiter is None:
            self._limiters[queue] = anyio.CapacityLimiter(max(1, threads))
        else:
            limiter.total_tokens = max(1, threads)

    def limiter(self, queue: str) -> anyio.CapacityLimiter:
        if queue not in self._limiters:
            self.resize(queue, DEFAULT_THREADS)
        return self._limiters[queue]

    @property
    def stragglers(self) -> int:
        """Threads whose attempt ended (timeout, cancel, stop) but whose function still runs."""
        return self._stragglers

    @property
    def abandoned(self) -> int:
        """Threads ever abandoned by their attempt in this process (a counter)."""
        return self._abandoned

    def busy(self, queue: str) -> int:
        """Threads of ``queue``'s pool running an attempt now (stragglers not included)."""
        limiter = self._limiters.get(queue)
        return limiter.borrowed_tokens if limiter is not None else 0

    async def run(self, queue: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in a thread of ``queue``'s pool; a cancellation (the attempt's
        timeout) returns at once and leaves the thread as a straggler."""
        state = _Straggler(self)
        try:
            return await anyio.to_thread.run_sync(state.call, func, args, limiter=self.limiter(queue),
                                                  abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            state.abandon()
            raise

    def _count(self, delta: int) -> None:
        with self._lock:
            self._stragglers += delta
            if delta > 0:
                self._abandoned += 1


class _Straggler:
    """One call's handshake between the event loop and its thread: whichever of "the
    attempt gave up" and "the function returned" happens second settles the count."""

    def __init__(self, pools: ThreadPools) -> None:
        self._pools = pools
        self._lock = threading.Lock()
        self._running = False
        self._abandoned = False

    def call(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self._lock:
            if self._abandoned:  # cancelled before the thread started: do not run at all
                return None
            self._running = True
        try:
            return func(*args)
        finally:
            with self._lock:
                self._running = False
                if self._abandoned:
                    self._pools._count(-1)

    def abandon(self) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
            if self._running:
                self._pools._count(+1)
