"""The job as handlers and callers see it, and the request to insert one."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core.options import OptionTable, option


class JobState(enum.StrEnum):
    """Every state a job row can be in; see docs/states.md for the machine."""

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


# A finished job never runs again by itself (an operator's retry may run it again).
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED})
# Waiting or running, in JobState order: the states that hold a unique key by default.
UNFINISHED_STATES = tuple(state for state in JobState if state not in FINISHED_STATES)
# The dashboard's and the API's grouping of the seven states (Bull Board's), in display order.
STATE_GROUPS: Mapping[str, tuple[JobState, ...]] = {
    "waiting": (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RETRYABLE),
    "active": (JobState.EXECUTING,),
    "completed": (JobState.COMPLETED,),
    "failed": (JobState.DISCARDED, JobState.CANCELLED),
}


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
    states: tuple[str, ...] = UNFINISHED_STATES


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything needed to insert one job; built by ``Engine.enqueue`` and by job
    documents. ``None`` fields take the handler's defaults.

    Every field but ``kind``, ``args`` and ``extra_meta`` is a job option, declared here
    once with ``option(document name, meta=key in jobs.meta, ms=documents give ms)``; see
    engine.core.options and :data:`JOB_OPTIONS`. Times are seconds (documents: ms), except
    ``backoff`` which keeps the document's dict.
    """

    kind: str
    args: dict[str, Any]
    queue: str | None = field(default=None, metadata=option("queue"))
    priority: int | None = field(default=None, metadata=option("priority"))
    delay: float | None = field(default=None, metadata=option("delay", ms=True))
    scheduled_at: datetime | None = field(default=None, metadata=option("scheduledAt"))
    max_attempts: int | None = field(default=None, metadata=option("attempts"))
    timeout: float | None = field(default=None, metadata=option("timeout", ms=True))
    tags: tuple[str, ...] = field(default=(), metadata=option("tags"))
    unique: UniqueSpec | None = field(default=None, metadata=option("unique"))
    vars: dict[str, Any] = field(default_factory=dict, metadata=option("vars", meta="vars"))
    on_success: dict[str, Any] | None = field(default=None, metadata=option("onSuccess", meta="on_success"))
    on_failure: dict[str, Any] | None = field(default=None, metadata=option("onFailure", meta="on_failure"))
    condition: str | None = field(default=None, metadata=option("condition", meta="condition"))
    failure_notification: dict[str, Any] | None = field(
        default=None, metadata=option("failureNotification", meta="failure_notification"))
    backoff: dict[str, Any] | None = field(default=None, metadata=option("backoff", meta="backoff"))
    depends_on: tuple[int, ...] = field(default=(), metadata=option("dependsOn", meta="depends_on"))
    extra_meta: dict[str, Any] = field(default_factory=dict)  # set by the engine (cron, followups), not an option

    @classmethod
    def from_options(cls, kind: str, args: dict[str, Any] | None, options: Mapping[str, Any]) -> JobSpec:
        """A JobSpec from ``Engine.enqueue``'s keywords, without listing them again::

            spec = JobSpec.from_options(kind, args, locals())

        ``options`` maps option names to values; other names in it (``self``, ``kind``,
        ``conn``) are ignored. Collection options take any iterable, and None for empty
        (``tags=["a"]``, ``vars=None``); the other values are kept as given.
        """
        values = {o.name: o.coerce(options[o.name]) for o in JOB_OPTIONS if o.name in options}
        return cls(kind=kind, args=args if args is not None else {}, **values)


# The job options table, read from JobSpec's fields (engine.core.options).
JOB_OPTIONS = OptionTable(JobSpec)
