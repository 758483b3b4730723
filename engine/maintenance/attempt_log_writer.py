"""Stores what running attempts log and report (engine/core/attempt_log.py): every
``interval`` the attempts with news, all in one statement, then a ``job.log`` event per job
so open dashboards update. Attempts that never log cost nothing here.
"""

from __future__ import annotations

import anyio
import structlog

from engine.core.attempt_log import MAX_LINES, AttemptLogs
from engine.core.events import Events, JobEvent
from engine.db.faults import log_fault
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.attempt_logs")
FLUSH_INTERVAL = 0.5
PRUNE_EVERY = 3600.0


class AttemptLogWriter:
    """Writes dirty attempt logs in batches; forgets old ones after ``keep`` seconds.

    Example::

        writer = AttemptLogWriter(store, executor.attempt_logs, events, keep=30 * 86400)
        await writer.flush()    # or: await writer.run() until cancelled
    """

    def __init__(self, store: JobStore, logs: AttemptLogs, events: Events, *, keep: float,
                 interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.logs = logs
        self.events = events
        self.keep = keep
        self.interval = interval

    async def flush(self) -> int:
        """Write every attempt with news; returns how many."""
        dirty = self.logs.dirty()
        if not dirty:
            return 0
        rows = [(entry.job_id, entry.attempt, entry.take(), entry.progress, entry.progress_text) for entry in dirty]
        try:
            await self.store.write_attempt_logs(rows, keep=MAX_LINES)
        except BaseException:
            for entry, row in zip(dirty, rows, strict=True):  # keep them for the next flush
                entry.pending.extendleft(reversed(row[2]))
                entry.dirty = True
            raise
        self.logs.written(dirty)
        for entry in dirty:
            self.events.emit(JobEvent("job.log", entry.job_id, "", "", entry.attempt))
        return len(dirty)

    async def run(self) -> None:
        """Flush on the interval until cancelled; never ends on a database fault."""
        since_prune = PRUNE_EVERY
        while True:
            try:
                await self.flush()
                if since_prune >= PRUNE_EVERY:
                    await self.store.prune_attempt_logs(self.keep)
                    since_prune = 0.0
            except Exception as exc:  # the next round retries
                log_fault(log, "writing attempt logs failed", exc)
            await anyio.sleep(self.interval)
            since_prune += self.interval
