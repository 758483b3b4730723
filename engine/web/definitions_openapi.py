"""The operations of definitions, kinds and job edits (README, "Managing jobs from the
dashboard"), rows of the operation table that :mod:`engine.web.openapi` builds
``/api/openapi.json`` from. Request bodies are the pydantic models that validate them
(``DefinitionBody``, ``JobPatch``); answers are the models below, so the document cannot
drift from the checks.

Example::

    [op.id for op in DEFINITION_OPERATIONS][:2]     # ['listDefinitions', 'createDefinition']
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from engine.cron.definition_model import CronTrigger, DefinitionBody, FieldError, ManualTrigger, OnceTrigger
from engine.web.api_models import Cursor, Error, IsoTime, Job, JobAnswer, JobPath, Limit, Model, Operation
from engine.web.job_edit import JobPatch

_TEXTS = {409: "The name exists, the definition comes from the config, it changed since it was read, or the "
          "job has started", 422: "Invalid: `errors` names each field"}


class FieldErrors(Error):
    """A 422: every field that was refused (nothing was saved)."""

    errors: list[FieldError]


class LastRun(Model):
    jobId: int
    state: str = Field(description="The job's state, or pruned")
    at: IsoTime | None


class RunCounts(Model):
    """Kept when old jobs are pruned."""

    total: int
    completed: int
    failed: int
    cancelled: int


class Definition(Model):
    """A saved job as the API reads it (camelCase, like job documents)."""

    name: str
    description: str
    tags: list[str]
    enabled: bool
    trigger: Annotated[ManualTrigger | CronTrigger | OnceTrigger, Field(discriminator="type")]
    job: dict[str, Any] = Field(description="A job document (payload hidden from a viewer without can_view_args)")
    source: Literal["api", "config"]
    nextRunAt: IsoTime | None
    lastRun: LastRun | None
    runs: RunCounts
    createdAt: IsoTime | None
    createdBy: str | None
    updatedAt: IsoTime | None
    updatedBy: str | None


class DefinitionAnswer(Model):
    definition: Definition


class DefinitionList(Model):
    definitions: list[Definition]


class DefinitionDeleted(Model):
    deleted: str = Field(description="The name deleted")


class RunBody(Model):
    model_config = ConfigDict(extra="forbid")

    vars: dict[str, Any] | None = Field(None, description="Placeholder values for this run")


class RunStarted(Model):
    jobId: int
    job: Job


class Run(Job):
    """A run in a definition's history."""

    duration: float | None = Field(description="Seconds from start to finish")
    errorLine: str | None = Field(description="First line of the last error")


class RunCursor(Model):
    before: int


class RunPage(Model):
    jobs: list[Run]
    next: RunCursor | None


class Kind(Model):
    """A registered kind with its defaults and the JSON Schema of its payload (to build a form)."""

    kind: str
    queue: str
    maxAttempts: int
    timeout: int | None = Field(description="Milliseconds")
    description: str
    payload_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the payload (data)")


class KindList(Model):
    kinds: list[Kind]


class DefinitionPath(Model):
    name: Annotated[str, Field(max_length=200, description="Definition name")]


class RunsQuery(Model):
    before: Cursor | None = Field(None, description="Cursor: runs with a smaller job id")
    limit: Limit | None = None


def _op(method: str, path: str, id: str, summary: str, answer: tuple[Any, str], errors: tuple[int, ...] = (), *,
        status: int = 200, body: Any = None, body_required: bool = True,
        query: type[Model] | None = None) -> Operation:
    return Operation(method, path, id, summary, answers={status: answer}, errors=errors, body=body,
                     body_required=body_required, query=query,
                     path_params=DefinitionPath if "{name}" in path else None,
                     error_texts=_TEXTS, error_models={422: FieldErrors})


_ONE = "/api/definitions/{name}"

DEFINITION_OPERATIONS: tuple[Operation, ...] = (
    _op("get", "/api/definitions", "listDefinitions", "Every definition, by name", (DefinitionList, "Definitions")),
    _op("post", "/api/definitions", "createDefinition", "Save a new definition", (DefinitionAnswer, "Saved"),
        (400, 403, 409, 422), status=201, body=DefinitionBody),
    _op("get", _ONE, "getDefinition", "One definition", (DefinitionAnswer, "The definition"), (404,)),
    _op("put", _ONE, "replaceDefinition", "Replace a definition whole (with updatedAt: 409 if it changed since)",
        (DefinitionAnswer, "Saved"), (400, 403, 404, 409, 422), body=DefinitionBody),
    _op("delete", _ONE, "deleteDefinition", "Delete a definition (its jobs stay)", (DefinitionDeleted, "Deleted"),
        (403, 404, 409)),
    _op("post", _ONE + "/run", "runDefinition", "Insert one run now (also when disabled)", (RunStarted, "The job"),
        (400, 403, 404, 422), status=201, body=RunBody, body_required=False),
    *(_op("post", f"{_ONE}/{action}", f"{action}Definition", f"{action.capitalize()} a definition",
          (DefinitionAnswer, "The definition"), (403, 404)) for action in ("enable", "disable")),
    _op("get", _ONE + "/runs", "listDefinitionRuns", "Its jobs, newest first, paged by id", (RunPage, "A page of runs"),
        (400, 404), query=RunsQuery),
    _op("get", "/api/kinds", "listKinds", "Registered kinds with the JSON Schema of their payload",
        (KindList, "Kinds")),
    Operation("patch", "/api/jobs/{job_id}", "editJob", "Edit a job that has not started", path_params=JobPath,
              body=JobPatch, answers={200: (JobAnswer, "The job after the edit")}, errors=(400, 403, 404, 409, 422),
              error_texts=_TEXTS, error_models={422: FieldErrors}),
)
