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

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from engine.core.job import Job, JobState

ErrorKind = Literal["error", "cancelled", "discarded", "rescued"]

# What Postgres cannot store in text or jsonb: NUL, and UTF-16 surrogates (lone ones reach
# Python strings from `surrogateescape` decoding, e.g. a binary HTTP body).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    r"""``text`` with each character Postgres refuses written as its ``\uXXXX`` escape, so a
    binary body or a NUL in an error is kept, visibly, instead of making the ack refused.
    For example ``"png\x00"`` becomes ``"png\\u0000"``."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable(value: Any) -> Any:
    """A JSON value with every string (keys too) made :func:`storable_text`."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


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
        return cls(attempt=attempt, at=datetime.now(UTC).isoformat(), kind=kind, error=storable_text(error),
                   traceback=None if traceback is None else storable_text(traceback))

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
    # The attempt's job, for the follow-ups of a discard that replaces a refused ack.
    job: Job | None = field(default=None, compare=False, repr=False)
    # A lease-lost ack's cause (``node X could not heartbeat for 2.0s ...``): such an ack counts
    # as a rescue, and becomes a discard saying so once the job was stopped too often.
    lease: str | None = None

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
        return cls(job_id, attempt, at, JobState.COMPLETED, result=result, followups=tuple(followups), job=job)

    @classmethod
    def retryable(cls, job: Job, error: ErrorEntry, delay: float) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.RETRYABLE, delay=delay, error=error.as_dict(), job=job)

    @classmethod
    def snoozed(cls, job: Job, seconds: float) -> Ack:
        """Scheduled again in ``seconds`` without spending the attempt."""
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.SCHEDULED, delay=seconds, refund=True, job=job)

    @classmethod
    def cancelled(cls, job: Job, error: ErrorEntry) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.CANCELLED, error=error.as_dict(), job=job)

    @classmethod
    def discarded(cls, job: Job, error: ErrorEntry, followups: Sequence[Any] = ()) -> Ack:
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.DISCARDED, error=error.as_dict(), followups=tuple(followups),
                   job=job)

    @classmethod
    def lease_lost(cls, job: Job, silent_for: float, cause: str | None = None) -> Ack:
        """A job this node stopped because its lease may have expired: available again at
        once, the attempt not spent, the reason recorded. ``cause`` says why heartbeats were
        not sent when the node knows (``the event loop was blocked for 2.0s (while job 7 ran)``)."""
        why = f" because {cause}" if cause else ""
        lease = f"node {job.attempted_by} could not heartbeat for {silent_for:.1f}s{why}"
        error = ErrorEntry.now(job.attempt, "rescued",
                               f"stopped: {lease}, so another node may rescue the job; returned to be retried")
        job_id, attempt, at = cls._fence(job)
        return cls(job_id, attempt, at, JobState.AVAILABLE, delay=0.0, refund=True, error=error.as_dict(), job=job,
                   lease=lease)

    def lease_discard_error(self, max_rescues: int) -> ErrorEntry:
        """The error of a lease-lost ack once its job was stopped so more than ``max_rescues``
        times: a handler that blocks the event loop makes its own node lose the lease on every
        run, and would otherwise go back unspent for ever."""
        return ErrorEntry.now(self.attempt, "rescued",
                              f"discarded: stopped again after {max_rescues} rescues (max_rescues); the job seems "
                              "to block its process (a blocking call in an async handler stops its node's "
                              f"heartbeats): {self.lease}")

    def refused_error(self, reason: str) -> ErrorEntry:
        """The error of the discard that replaces this ack when Postgres refuses to store it;
        it keeps the attempt's own error, if it had one."""
        message = f"result could not be stored: {reason}"
        if self.error and self.error.get("error"):
            message += f"; the attempt's error: {self.error['error']}"
        return ErrorEntry.now(self.attempt, "error", message[:2_000], (self.error or {}).get("traceback"))

    def refused(self, reason: str, followups: Sequence[Any] = ()) -> Ack:
        """This ack replaced by a discard (with the discard's ``followups``), when Postgres
        refuses to store the ack itself."""
        return Ack(self.job_id, self.attempt, self.attempted_at, JobState.DISCARDED,
                   error=self.refused_error(reason).as_dict(), followups=tuple(followups), job=self.job)
