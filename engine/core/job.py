"""The job as handlers and callers see it, and the request to insert one."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobState(enum.StrEnum):
    """Every state a job row can be in; see docs/states.md for the machine."""

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RETRYABLE})


@dataclass(slots=True)
class Job:
    """A job row, handed to handlers.

    ``args`` holds the rendered arguments while a handler runs (the handler's
    ``args_model`` instance when it declares one); the stored row keeps the
    un-rendered placeholders.

    Example::

        @handler("greet")
        async def greet(job: Job) -> str:
            return f"hello {job.args['name']} (attempt {job.attempt})"
    """

    id: int
    queue: str
    kind: str
    args: Any
    state: str = JobState.AVAILABLE
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 20
    scheduled_at: datetime | None = None
    inserted_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    attempted_by: str | None = None
    tags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    timeout: float | None = None
    unique_key: str | None = None

    @property
    def vars(self) -> dict[str, Any]:
        """Variables for ``{{placeholders}}`` given at enqueue (``vars=``)."""
        return self.meta.get("vars") or {}

    @property
    def parent_id(self) -> int | None:
        """The job whose onSuccess/onFailure enqueued this one, if any."""
        return self.meta.get("parent_id")

    @classmethod
    def from_record(cls, record: Any) -> Job:
        """Build a Job from an asyncpg record of ``jobs``."""
        return cls(
            id=record["id"],
            queue=record["queue"],
            kind=record["kind"],
            args=_json(record["args"], {}),
            state=record["state"],
            priority=record["priority"],
            attempt=record["attempt"],
            max_attempts=record["max_attempts"],
            scheduled_at=record["scheduled_at"],
            inserted_at=record["inserted_at"],
            attempted_at=record["attempted_at"],
            completed_at=record["completed_at"],
            attempted_by=record["attempted_by"],
            tags=list(record["tags"] or ()),
            meta=_json(record["meta"], {}),
            errors=_json(record["errors"], []),
            result=_json(record["result"], None),
            timeout=record["timeout"],
            unique_key=record["unique_key"],
        )

    @classmethod
    def from_claim(cls, record: Any) -> Job:
        """Build a Job from a row of JOB_FETCH_AVAILABLE, by position: the claim is the one
        statement that runs per job, and unpacking is a third cheaper than 19 lookups by name.
        The order is engine.sql._job_columns'; a test checks both builders agree."""
        (id_, queue, kind, state, priority, attempt, max_attempts, timeout, scheduled_at, inserted_at,
         attempted_at, completed_at, attempted_by, tags, unique_key, args, meta, errors, result) = record
        return cls(id_, queue, kind, _json(args, {}), state, priority, attempt, max_attempts, scheduled_at,
                   inserted_at, attempted_at, completed_at, attempted_by, list(tags) if tags else [],
                   _json(meta, {}), _json(errors, []), _json(result, None), timeout, unique_key)


def _json(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


@dataclass(frozen=True, slots=True)
class UniqueSpec:
    """How duplicates are recognised: same kind + the named args ``keys`` (all args
    when empty) or an explicit ``key``, within ``period`` seconds (None: forever),
    while the existing job is in one of ``states``."""

    keys: tuple[str, ...] = ()
    key: str | None = None
    period: float | None = None
    states: tuple[str, ...] = ("scheduled", "available", "executing", "retryable")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything needed to insert one job; built by ``Engine.enqueue`` and by job
    documents. ``None`` fields take the handler's defaults."""

    kind: str
    args: dict[str, Any]
    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    scheduled_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    unique: UniqueSpec | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    on_success: dict[str, Any] | None = None
    on_failure: dict[str, Any] | None = None
    condition: str | None = None
    failure_notification: dict[str, Any] | None = None
    backoff: dict[str, Any] | None = None
    depends_on: tuple[int, ...] = ()
    extra_meta: dict[str, Any] = field(default_factory=dict)
