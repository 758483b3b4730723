"""The dependency sweeper: the backstop that settles waiting jobs whose dependencies
finished without an ack (see engine/insert/dependencies.py)."""

from __future__ import annotations

import anyio
import structlog

from engine.db.faults import log_fault
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.dependencies")

# Seconds between backstop sweeps; acks settle dependents at once, so this is only a bound
# on how long a job waits after its dependency finished through another path.
SWEEP_INTERVAL = 15.0
SWEEP_BATCH = 1_000


class DependencySweeper:
    """Every ``interval`` seconds, settles waiting jobs whose dependencies finished
    without an ack (see the module docstring). Idempotent; safe on every node at once.

    Example::

        sweeper = DependencySweeper(store)
        await sweeper.sweep()        # once; returns how many jobs it settled
    """

    def __init__(self, store: JobStore, *, interval: float | None = None) -> None:
        self.store = store
        self.interval = SWEEP_INTERVAL if interval is None else interval

    async def sweep(self) -> int:
        total = 0
        while True:
            settled = await self.store.settle_waiting(SWEEP_BATCH)
            total += settled
            if settled < SWEEP_BATCH:
                return total

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            try:
                settled = await self.sweep()
            except Exception as exc:  # the next sweep retries
                log_fault(log, "dependency sweep failed", exc)
                continue
            if settled:
                log.info("settled waiting jobs whose dependencies finished outside an ack", count=settled)
