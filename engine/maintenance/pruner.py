"""Deletes finished jobs after their retention, in bounded batches, after counting the
finished jobs of definitions into their counters (so those survive the delete)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import structlog

from engine.core.config import RetentionConfig
from engine.db.faults import log_fault
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.pruner")


class Pruner:
    """Every ``retention.interval``: delete completed, cancelled and discarded jobs older
    than their retention (and audit rows older than ``retention.audit``), ``batch_size``
    rows per statement, so no prune holds many locks or one long transaction however much
    has piled up.

    Example::

        pruner = Pruner(store, config.retention)
        deleted = await pruner.prune_once()    # or: await pruner.run() until cancelled
    """

    def __init__(self, store: JobStore, config: RetentionConfig) -> None:
        self.store = store
        self.config = config

    async def tally_once(self) -> int:
        """Count finished definition jobs into their definitions' counters (runs completed,
        failed, cancelled; see DEFINITION_TALLY); returns how many were counted."""
        total = 0
        while True:
            counted = await self.store.definition_tally(self.config.batch_size)
            total += counted
            if counted < self.config.batch_size:
                return total
            await anyio.lowlevel.checkpoint()

    async def prune_once(self) -> int:
        """Tally definition jobs, then delete batches until one is not full; returns how
        many rows went. Tallying first is what lets the counters survive pruning."""
        await self.tally_once()
        total = 0
        while True:
            deleted = await self.store.prune(self.config.completed, self.config.cancelled,
                                             self.config.discarded, self.config.batch_size)
            total += deleted
            if deleted < self.config.batch_size:
                return total
            await anyio.lowlevel.checkpoint()  # let job work in between batches

    async def prune_audit_once(self) -> int:
        """Delete audit rows older than ``retention.audit`` and expired login sessions, in
        batches; returns how many audit rows went."""
        total = 0
        while True:
            deleted = await self.store.audit_prune(self.config.audit, self.config.batch_size)
            total += deleted
            if deleted < self.config.batch_size:
                break
            await anyio.lowlevel.checkpoint()
        while await self.store.session_prune(self.config.batch_size) >= self.config.batch_size:
            await anyio.lowlevel.checkpoint()
        return total

    async def run(self) -> None:
        """Prune on the interval until cancelled; never ends on a database fault."""
        while True:
            try:
                deleted = await self.prune_once()
                if deleted:
                    log.info("pruned finished jobs", count=deleted)
                audited = await self.prune_audit_once()
                if audited:
                    log.info("pruned audit log rows", count=audited)
            except Exception as exc:  # the next round retries
                log_fault(log, "pruning failed", exc)
            await anyio.sleep(self.config.interval)
