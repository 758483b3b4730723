"""Keeps job_rollup (migration 010), the history behind the dashboard's charts, up to date.

Every ``interval`` one node (the database decides: the rollup's state row is taken with
SKIP LOCKED) aggregates the jobs that finished in whole minutes since the last pass, in one
statement per hour of them, reading jobs_finished_idx. Nothing runs per job: the claim and
the ack are untouched. Rows older than ``keep`` are forgotten; they outlive job pruning.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import structlog

from engine.db.faults import log_fault
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.rollup")
ROLLUP_INTERVAL = 15.0
ROLLUP_KEEP = 8 * 86400.0  # the 7-day chart, and a day to spare


class Rollup:
    """Aggregates finished jobs per minute, queue and kind.

    Example::

        rollup = Rollup(store)
        await rollup.roll_once()    # or: await rollup.run() until cancelled
    """

    def __init__(self, store: JobStore, *, interval: float = ROLLUP_INTERVAL, keep: float = ROLLUP_KEEP) -> None:
        self.store = store
        self.interval = interval
        self.keep = keep

    async def roll_once(self) -> int:
        """Catch up (an hour per statement); returns the groups written."""
        written = 0
        while True:
            done = await self.store.rollup_finished()
            if done is None:  # another node is rolling
                return written
            written += done.groups
            if not done.behind:
                return written
            await anyio.lowlevel.checkpoint()  # a long backlog: let job work in between

    async def run(self) -> None:
        """Roll up on the interval until cancelled; never ends on a database fault."""
        while True:
            try:
                await self.roll_once()
                await self.store.rollup_prune(self.keep)
            except Exception as exc:  # the next round retries
                log_fault(log, "rollup failed", exc)
            await anyio.sleep(self.interval)
