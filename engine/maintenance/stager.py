"""Makes scheduled and retryable jobs available when they are due, on time: it sleeps
until the next due job (or the poll interval), and is woken by inserts."""

from __future__ import annotations

import anyio
import structlog

from engine.db.faults import log_fault
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.stager")
BATCH = 5_000


class Stager:
    """Moves due ``scheduled`` and ``retryable`` jobs to ``available``.

    After a database fault it waits ``poll_interval`` (or a :meth:`wake`) before trying
    again: never a hot loop, and back at once when the engine sees the database return.

    Example::

        stager = Stager(store, poll_interval=1.0)
        stager.wake()            # a job was inserted: look now
        await stager.run()       # until cancelled
    """

    def __init__(self, store: JobStore, *, poll_interval: float) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._event = anyio.Event()

    def wake(self) -> None:
        self._event.set()

    async def run(self) -> None:
        while True:
            try:
                staged = await self.store.stage_due(BATCH)
                if sum(staged.values()) >= BATCH:
                    continue
                due_in = await self.store.next_due_in()
            except Exception as exc:  # the next round retries
                log_fault(log, "staging failed", exc)
                due_in = None
            wait = self.poll_interval if due_in is None else min(max(due_in, 0.0), self.poll_interval)
            with anyio.move_on_after(wait):
                await self._event.wait()
            self._event = anyio.Event()
