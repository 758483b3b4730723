"""``PATCH /api/jobs/{id}``: edit a job that has not started (scheduled, available or
retryable): its ``data``, ``priority``, ``scheduledAt``, ``tags``, ``queue``, ``attempts``.

The new values go through the same checks as an insert (the kind's args model, size,
secrets); the write is one state-guarded UPDATE (``JOB_EDIT_WAITING``), so an edit that
races the claim either lands before it or changes nothing and is a 409.

Example::

    job = await edit_job(engine, 42, {"data": {"to": "ops@example.com"}, "priority": 5})
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from engine.core.job import Job, JobSpec, JobState
from engine.core.registry import KIND_PATTERN
from engine.cron.definition_model import DefinitionInvalid, FieldError
from engine.engine import Engine
from engine.web.actions import Conflict, NotFound
from engine.web.stores import job_store

__all__ = ["EDITABLE_STATES", "JobPatch", "edit_job"]

EDITABLE_STATES = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RETRYABLE)


class JobPatch(BaseModel):
    """The fields of a job that may change before it starts (each optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: dict[str, Any] | None = Field(None, description="The job's payload (args), replaced whole")
    priority: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000)] | None = None
    scheduledAt: AwareDatetime | None = Field(None, description="When it is due")
    tags: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)] | None = None
    queue: Annotated[str, Field(pattern=KIND_PATTERN.pattern)] | None = None
    attempts: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = Field(None, description="Max attempts")


def _parse(body: Any) -> JobPatch:
    try:
        patch = JobPatch.model_validate(body)
    except ValidationError as exc:
        raise DefinitionInvalid([
            FieldError(".".join(str(p) for p in e["loc"]) or "body",
                       "unknown field" if e["type"] == "extra_forbidden" else str(e["msg"]))
            for e in exc.errors()]) from None
    if not patch.model_fields_set:
        raise DefinitionInvalid([FieldError("body", "give at least one of data, priority, scheduledAt, tags, "
                                            "queue, attempts")])
    return patch


def _check(engine: Engine, job: Job, patch: JobPatch) -> None:
    """The edited job must insert: its kind's args model, size and secret checks."""
    spec = JobSpec(kind=job.kind, args=patch.data if patch.data is not None else job.args)
    handler = engine.registry.get(job.kind) if job.kind in engine.registry else None
    if handler is not None and handler.args_model is not None and patch.data is not None:
        try:
            handler.args_model.model_validate(patch.data)
        except ValidationError as exc:
            raise DefinitionInvalid([FieldError(".".join(["data", *(str(p) for p in e["loc"])]), e["msg"])
                                     for e in exc.errors()]) from None
    if handler is not None:
        try:
            engine.inserter.row(replace(spec, queue=patch.queue or job.queue))
        except ValueError as exc:
            raise DefinitionInvalid([FieldError("data", str(exc))]) from None


async def edit_job(engine: Engine, job_id: int, body: Any) -> Job:
    """Apply the patch; NotFound, DefinitionInvalid (422 naming the field) or Conflict (409:
    the job is executing or finished, nothing changed)."""
    patch = _parse(body)
    store = job_store(engine)
    job = await store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job.state not in EDITABLE_STATES:
        raise Conflict(_not_editable(job_id, job.state))
    _check(engine, job, patch)
    changes: dict[str, Any] = {"priority": patch.priority, "tags": patch.tags, "queue": patch.queue,
                               "max_attempts": patch.attempts}
    if patch.data is not None:
        changes["args"] = patch.data
    if patch.scheduledAt is not None:
        changes["scheduled_at"] = patch.scheduledAt
    applied = await store.job_edit_waiting(job_id, changes)
    if applied is None:  # claimed (or finished) between the read and the write
        current = await store.get(job_id)
        raise Conflict(_not_editable(job_id, current.state if current else "deleted"))
    if applied["state"] == JobState.AVAILABLE:
        await store.notify(store.statements.insert_channel, applied["queue"])  # wake its queue's producers
    edited = await store.get(job_id)
    assert edited is not None
    return edited


def _not_editable(job_id: int, state: str) -> str:
    return (f"job {job_id} is {state}: only a job that has not started (scheduled, available, retryable) "
            "can be edited; nothing was changed")
