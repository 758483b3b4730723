"""Batched, fenced acks: attempts' outcomes are buffered and written together.

A flush takes everything buffered so far, so batches grow with load and an idle
engine acks at once. A flush that fails on a database fault (the network, a restart,
a timeout) is retried with capped, jittered backoff, cut short when the database is
known to answer again: acks that could not be written during an outage land when it
ends. An ack that Postgres refuses for itself (bad data) is isolated from its batch
and the job discarded with the reason (and the discard's follow-ups: onFailure, the
failure notification), so one bad ack never blocks the others. A fault while opening a
connection (login refused, too many connections) is never a refusal: the ack waits.
A lease-lost ack (its node stopped the job for want of heartbeats) counts as a rescue: after
``max_rescues`` of them the job is discarded, since its handler seems to block its process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import asyncpg
import structlog

from engine.core import backoff
from engine.core.acks import Ack
from engine.core.job import Job
from engine.db.faults import is_transient
from engine.db.rows import InsertRow
from engine.db.store import JobStore

MAX_BATCH = 1_000
RETRY_CAP = 5.0
# At shutdown, the last flush gets this long (the engine has usually flushed already).
FINAL_FLUSH = 2.0

log = structlog.get_logger("jobengine.acker")


class Acker:
    """Collects acks from job tasks and writes them in batches.

    Example::

        acker.put(ack)          # never blocks, never raises
        await acker.flush()     # write everything buffered (at shutdown)
    """

    def __init__(self, store: JobStore, *,
                 on_discarded: Callable[[Job, dict[str, Any]], Sequence[InsertRow]] | None = None,
                 max_rescues: int = 3) -> None:
        self.store = store
        self.max_rescues = max_rescues  # lifeline.max_rescues: lease-lost acks count as rescues
        self.on_discarded = on_discarded  # the follow-ups of a discard that replaces a refused ack
        self._pending: list[Ack] = []
        self._event = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._nudge = anyio.Event()
        self._lock = anyio.Lock()  # one flush at a time: two would write, then drop, the same batch

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_ids(self) -> list[int]:
        """Jobs whose outcome is buffered, not yet written."""
        return [ack.job_id for ack in self._pending]

    def put(self, ack: Ack) -> None:
        self._pending.append(ack)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._event.set()

    def nudge(self) -> None:
        """The database answers again: retry a failed flush now."""
        self._nudge.set()

    async def run(self) -> None:
        """Flush whenever acks arrive, until cancelled; then flush what is left (shielded)."""
        try:
            while True:
                await self._event.wait()
                self._event = anyio.Event()
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_FLUSH):
                await self.flush()
            if self._pending:
                log.warning("acks not written at shutdown; their jobs will be rescued and run again",
                            count=len(self._pending), job_ids=self.pending_ids()[:20])

    async def wait_idle(self) -> None:
        """Wait until every ack put so far is written."""
        await self._idle.wait()

    async def flush(self) -> None:
        """Write every buffered ack, retrying database faults until they land."""
        async with self._lock:
            failures = 0
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                try:
                    await self._write(batch)
                except Exception as exc:  # only faults get here: _write isolates refused acks
                    failures += 1
                    await self._back_off(exc, failures)
                    continue
                failures = 0
                del self._pending[: len(batch)]
            self._idle.set()

    async def _back_off(self, exc: Exception, failures: int) -> None:
        delay = backoff.jittered(failures, base=0.1, cap=RETRY_CAP)
        log.warning("ack write failed; retrying", error=str(exc) or type(exc).__name__,
                    pending=len(self._pending), retry_in=round(delay, 2))
        self._nudge = anyio.Event()
        with anyio.move_on_after(delay):
            await self._nudge.wait()

    async def _write(self, batch: list[Ack]) -> None:
        lost = [ack for ack in batch if ack.lease is not None]  # rare: after a stall or an outage
        rest = [ack for ack in batch if ack.lease is None] if lost else batch
        applied: set[int] = set()
        if lost:  # a batch retried after a fault finds these stale, harmlessly (they are fenced)
            try:
                applied = await self.store.return_lease_lost(lost, self.max_rescues,
                                                             on_discarded=self._lease_followups)
            except Exception as exc:
                if not refused(exc):
                    raise
                log.error("lease-lost acks refused by Postgres; writing them as plain acks", error=str(exc),
                          job_ids=[ack.job_id for ack in lost][:20])
                rest = batch  # uncounted, but never stuck: _finish isolates what is refused
        if rest:
            applied |= await self._finish(rest)
        stale = [ack for ack in batch if ack.job_id not in applied]
        if stale:
            log.info("stale acks ignored (job was rescued, cancelled or re-claimed)",
                     job_ids=[ack.job_id for ack in stale][:50], count=len(stale))
            # Each ack says its attempt ended: a cancelled job waiting for that is stopped.
            await self.store.confirm_stopped(stale)

    async def _finish(self, batch: list[Ack]) -> set[int]:
        try:
            return await self.store.finish(batch)
        except Exception as exc:
            if not refused(exc):
                raise
            if len(batch) == 1:
                return await self._refused(batch[0], exc)
            applied: set[int] = set()
            for ack in batch:  # isolate the ack Postgres refuses
                applied |= await self._finish([ack])
            return applied

    async def _refused(self, ack: Ack, exc: Exception) -> set[int]:
        """Postgres refuses this ack for itself: discard the job, saying why, with the
        discard's follow-ups (without them should they be what Postgres refuses)."""
        log.error("ack refused by Postgres; discarding job", job_id=ack.job_id, error=str(exc))
        followups = self._discard_followups(ack, str(exc))
        for discard in ([ack.refused(str(exc), followups)] if followups else []) + [ack.refused(str(exc))]:
            try:
                return await self.store.finish([discard])
            except Exception as again:
                if not refused(again):
                    raise
                log.error("could not record the refused ack", job_id=ack.job_id, error=str(again),
                          with_followups=bool(discard.followups))
        log.error("the job will be rescued as unknown", job_id=ack.job_id)
        return set()

    def _lease_followups(self, job: Job, error: dict[str, Any]) -> Sequence[InsertRow]:
        """The follow-ups of a job discarded for losing its node's lease too often."""
        if self.on_discarded is None:
            return ()
        try:
            return self.on_discarded(job, error)
        except Exception:
            log.exception("follow-ups of a discarded job failed; discarding without them", job_id=job.id)
            return ()

    def _discard_followups(self, ack: Ack, reason: str) -> Sequence[InsertRow]:
        if self.on_discarded is None or ack.job is None:
            return ()
        try:
            return self.on_discarded(ack.job, ack.refused_error(reason).as_dict())
        except Exception:
            log.exception("follow-ups of a refused ack failed; discarding without them", job_id=ack.job_id)
            return ()


def refused(exc: BaseException) -> bool:
    """Postgres (or asyncpg's encoder) rejects the ack itself, so retrying cannot help.
    Anything else, known fault or not, is retried: dropping an outcome is worse than waiting.
    Connection-level errors (SQLSTATE classes 08 and 28) are faults (see is_transient)."""
    if isinstance(exc, asyncpg.PostgresError):
        return not is_transient(exc)
    return isinstance(exc, ValueError)  # asyncpg's client-side DataError
