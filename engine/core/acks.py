"""Acks: the outcome of one attempt, as the state transition that records it.

An ack is built only through its named constructors (:meth:`Ack.completed`,
:meth:`Ack.retryable`, :meth:`Ack.snoozed`, :meth:`Ack.cancelled`, :meth:`Ack.discarded`,
:meth:`Ack.lease_lost`, :meth:`Ack.refused`), so every transition an attempt can make is
listed here once; :meth:`engine.db.store.JobStore.finish` writes them, fenced by
``(job_id, attempt, attempted_at)`` so a late ack after a rescue or a cancel changes nothing.

Every error kept on a job is an :class:`ErrorEntry`, which always carries ``at``.

Example::

    ack = Ack.retryable(job, ErrorEntry.now(job.attempt, "error", "boom"), delay=5.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from engine.core.job import Job, JobState

ErrorKind = Literal["error", "cancelled", "discarded", "rescued"]


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One entry of a job's ``errors`` column: which attempt, when, what kind, the message
    and (for a raised exception) the traceback."""

    attempt: int
    at: str
    kind: ErrorKind
    error: str
    traceback: str | None = None

    @classmethod
    def now(cls, attempt: int, kind: ErrorKind, error: str, traceback: str | None = None) -> ErrorEntry:
        return cls(attempt=attempt, at=datetime.now(UTC).isoformat(), kind=kind, error=error, traceback=traceback)

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored in ``jobs.errors`` (no ``traceback`` key when there is none)."""
        entry: dict[str, Any] = {"attempt": self.attempt, "at": self.at, "kind": self.kind, "error": self.error}
        if self.traceback:
            entry["traceback"] = self.traceback
        return entry


@dataclass(frozen=True, slots=True)
class Ack:
    """The outcome of one attempt, written by :meth:`engine.db.store.JobStore.finish`.

    ``followups`` are insert rows written in the same transaction, only if this ack is
    applied: a chain's child exists exactly when its parent finished. ``error`` is the
    :meth:`ErrorEntry.as_dict` appended to the job's errors.
    """

    job_id: int
    attempt: int
    attempted_at: datetime
    state: JobState
    result: Any = None
    delay: float | None = None
    refund: bool = False
    error: dict[str, Any] | None = None
    followups: tuple[Any, ...] = ()

    @staticmethod
    def _fence(job: Job) -> tuple[int, int, datetime]:
        return job.id, job.attempt, job.attempted_at or datetime.now(UTC)

    @property
    def plain_completion(self) -> bool:
        """True for a completion with nothing but a result (the lean ack statement's case)."""
        return self.state is JobState.COMPLETED and self.delay is None and not self.refund and self.error is None

    @classmethod
    def completed(cls, job: Job, result: Any, followups: Sequence[Any] = ()) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.COMPLETED, result=result, followups=tuple(followups))

    @classmethod
    def retryable(cls, job: Job, error: ErrorEntry, delay: float) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.RETRYABLE, delay=delay, error=error.as_dict())

    @classmethod
    def snoozed(cls, job: Job, seconds: float) -> Ack:
        """Scheduled again in ``seconds`` without spending the attempt."""
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.SCHEDULED, delay=seconds, refund=True)

    @classmethod
    def cancelled(cls, job: Job, error: ErrorEntry) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.CANCELLED, error=error.as_dict())

    @classmethod
    def discarded(cls, job: Job, error: ErrorEntry, followups: Sequence[Any] = ()) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.DISCARDED, error=error.as_dict(), followups=tuple(followups))

    @classmethod
    def lease_lost(cls, job: Job, silent_for: float) -> Ack:
        """A job this node stopped because its lease may have expired: available again at
        once, the attempt not spent, the reason recorded."""
        error = ErrorEntry.now(job.attempt, "rescued",
                               f"stopped: node {job.attempted_by} could not heartbeat for {silent_for:.1f}s, so "
                               "another node may rescue the job; returned to be retried")
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.AVAILABLE, delay=0.0, refund=True, error=error.as_dict())

    def refused(self, reason: str) -> Ack:
        """This ack replaced by a discard, when Postgres refuses to store the ack itself."""
        error = ErrorEntry.now(self.attempt, "error", f"result could not be stored: {reason}"[:2_000])
        return Ack(self.job_id, self.attempt, self.attempted_at, JobState.DISCARDED, error=error.as_dict())
