"""The JSON API's request bodies, query parameters and answers as pydantic models, and the row
type of the operation table (:class:`Operation`) that :mod:`engine.web.openapi` turns into
``/api/openapi.json``. The document's schemas are generated from these types, so what the
document says and what the code sends are one declaration.

Conventions: a field without a default is always sent; one with a default may be absent
(answers are dumped with ``exclude_unset``). Times are the ISO-8601 text the handlers already
build (``IsoTime``). A viewer who may not view args sees payload fields as ``"hidden"``.

Example::

    JobPage(jobs=[job_dict], next=None).model_dump(mode="json", exclude_unset=True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from engine.core.accounts import Role
from engine.core.documents import _Document, _Unique
from engine.core.job import JobState
from engine.core.search import MAX_QUERY
from engine.web import actions, cron
from engine.web.actions import JOB_ACTIONS, MAX_BULK_IDS, MAX_PAGE, MAX_TEXT
from engine.web.present import GROUPS, STATES

# --- the operation table's row ----------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One operation of the API: ``answers`` maps a success status to (type, description);
    ``errors`` lists the error statuses (401 and 503 are added to every authenticated one),
    answered with :class:`Error` unless ``error_models`` names another body.
    Types are anything pydantic can describe: a model, a TypedDict, a dataclass, ``str``.

    Example::

        Operation("get", "/api/queues", "listQueues", "Queues with counts per state",
                  answers={200: (QueueList, "Queues")})
    """

    method: str
    path: str
    id: str
    summary: str
    answers: Mapping[int, tuple[Any, str]]
    errors: tuple[int, ...] = ()
    body: Any = None
    body_required: bool = True
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    authenticated: bool = True
    media_type: str = "application/json"
    error_texts: Mapping[int, str] = field(default_factory=dict)
    error_models: Mapping[int, Any] = field(default_factory=dict)  # status -> its body, when not Error


@dataclass(frozen=True)
class Feature:
    """What a per-feature module adds to the document: rows of the table, or (for a module
    that writes its paths as dicts) functions returning its ``paths`` and its ``schemas``."""

    operations: Sequence[Operation] = ()
    paths: Callable[[], dict[str, Any]] | None = None
    schemas: Callable[[], dict[str, Any]] | None = None


# --- shared types -------------------------------------------------------------------------------

# The handlers send times as isoformat() text; typed as datetime they would be re-rendered
# (`Z` for `+00:00`), so the text is kept and only its format is declared.
IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Hidden = Literal["hidden"]
Group = Literal["waiting", "active", "completed", "failed"]
JobAction = Literal["retry", "cancel", "delete", "run"]
JobId = Annotated[int, Field(ge=1, le=2**63 - 1, description="Job id")]
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern="^[^\\x00]*$")]  # no NUL
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Page size (default 50, at most {MAX_PAGE})")]
Cursor = Annotated[int, Field(ge=1)]
assert set(get_args(Group)) == set(GROUPS) and set(get_args(JobAction)) == set(JOB_ACTIONS)


class Model(BaseModel):
    """The base of the API's models (one place for what they share)."""


class Error(Model):
    """Every error answer: the message names the problem (a field, a search term)."""

    error: str
    status: int


# --- jobs ---------------------------------------------------------------------------------------


class Job(Model):
    """A job as lists show it (args as stored: placeholders unrendered, secrets as ***)."""

    id: int
    state: JobState
    group: Group = Field(description="The state's group: waiting, active, completed or failed")
    queue: str
    kind: str
    attempt: int
    max_attempts: int
    priority: int
    tags: list[str]
    args: Any = Field(description="Stored args (placeholders unrendered; secrets shown as ***)")
    error: str | None = Field(description="The last attempt's error")
    scheduled_at: IsoTime | None
    inserted_at: IsoTime | None
    attempted_at: IsoTime | None
    completed_at: IsoTime | None


class AttemptError(Model):
    """One entry of a job's errors: which attempt, when, what kind (the engine writes error,
    cancelled, discarded or rescued), the message. Each key may be missing from a row written
    around the engine (an old row, a handler's own SQL)."""

    attempt: int | None = None
    at: str | None = None
    kind: str | None = None
    error: str | None = None
    traceback: str | None = None


class ChildJob(Model):
    """A job this one enqueued (onSuccess, onFailure, a failure notification)."""

    id: int
    kind: str
    queue: str
    state: JobState


class TimelineEvent(Model):
    at: str
    event: str
    detail: str


class AttemptLog(Model):
    """What one attempt logged through ctx.logger (capped) and its last progress."""

    attempt: int
    lines: list[str]
    progress: float | None
    progress_text: str | None
    updated_at: IsoTime


class JobDetail(Job):
    """One job with its document, attempts, chain, timeline and attempt logs."""

    document: dict[str, Any] = Field(description="The job as a job document (docs/job-documents.md)")
    meta: dict[str, Any] | Hidden
    result: Any
    errors: list[AttemptError] | Hidden
    attempted_by: str | None
    timeout: float | None = Field(description="Seconds")
    rescued: int
    cancelled_at: IsoTime | None
    discarded_at: IsoTime | None
    parent_id: int | None
    children: list[ChildJob]
    timeline: list[TimelineEvent]
    attempt_logs: list[AttemptLog] | Hidden


class JobAnswer(Model):
    job: Job


class JobDetailAnswer(Model):
    job: JobDetail


class Deleted(Model):
    deleted: int = Field(description="The id deleted")


class PageCursor(Model):
    """The query parameter that fetches the next page (one of the two)."""

    before: int | None = None
    after: int | None = None


class JobPage(Model):
    jobs: list[Job]
    next: PageCursor | None = Field(description="Query parameters of the next page, or null")


class JobDocument(_Document):
    """A job document (docs/job-documents.md): ``jobType``, ``data`` and the job options."""

    # _Document's before-validator reads `true` as {} (unique by kind and args); JSON Schema
    # is built from the annotation, so the annotation says it.
    unique: _Unique | bool | None = None  # type: ignore[assignment]


EnqueueBody = Annotated[JobDocument | dict[str, Any], Field(
    description="A job document, or with ?kind= a bare payload (the job's data)")]


class JobListQuery(Model):
    """GET /api/jobs (the fields of engine.web.actions.JobFilter)."""

    state: JobState | None = Field(None, description="Only jobs in this state")
    queue: Text | None = Field(None, description="Only this queue")
    kind: Text | None = Field(None, description="Only this kind")
    tag: Text | None = Field(None, description="Only jobs with this tag")
    q: Annotated[str, Field(max_length=MAX_QUERY, pattern="^[^\\x00]*$")] | None = Field(None, description=(
        'Search terms combined with AND (README, "Finding jobs"): id:123 kind:mail queue:default '
        'state:discarded,retryable tag:billing node:NAME definition:NAME args.to:a@example.com '
        'error:"timed out", and bare words (text in args). Error text, bare words, node: and '
        'definition: are checked on the newest 50,000 jobs matching the other terms. A malformed '
        'query is a 400 naming the term.'))
    before: Cursor | None = Field(None, description="Cursor: jobs with a smaller id")
    after: Cursor | None = Field(None, description="Cursor: jobs with a larger id")
    order: Literal["newest", "oldest"] | None = Field(None, description="Sort by insertion time (default newest)")
    limit: Limit | None = None


class EnqueueQuery(Model):
    kind: Text | None = Field(None, description="Kind, when the body is a bare payload")


class JobPath(Model):
    job_id: JobId


class BulkFilter(Model):
    """The jobs a bulk action reaches: the filters of GET /api/jobs (any other key is a 400)."""

    model_config = ConfigDict(extra="forbid")

    state: JobState | None = None
    queue: Text | None = None
    kind: Text | None = None
    tag: Text | None = None
    q: Annotated[str, Field(max_length=MAX_QUERY, pattern="^[^\\x00]*$")] | None = None


assert tuple(BulkFilter.model_fields) == actions.BULK_FILTER_KEYS


class BulkRequest(Model):
    """Exactly one of ``ids`` and ``filter``."""

    model_config = ConfigDict(extra="forbid")

    action: JobAction
    ids: Annotated[list[JobId], Field(min_length=1, max_length=MAX_BULK_IDS)] | None = None
    filter: BulkFilter | None = None


class BulkResult(Model):
    """What a bulk action did (engine.web.actions.BulkResult)."""

    action: JobAction
    selected: int = Field(description="Jobs the ids or the filter selected")
    changed: list[int] = Field(description="Ids of the jobs changed")
    more: bool = Field(description="More jobs match the filter than one request touches")
    refused: dict[str, str] = Field(description="Job id -> why the action was refused for that job")


# The handlers' TypedDicts are the shapes they build (pydantic reads typing.TypedDict only
# from Python 3.12 on): the models must name the same keys.
assert set(BulkResult.model_fields) == set(actions.BulkResult.__annotations__)


# --- queues, stats ------------------------------------------------------------------------------


class StateCounts(Model):
    """Jobs per state."""

    scheduled: int
    available: int
    retryable: int
    executing: int
    completed: int
    discarded: int
    cancelled: int


class GroupCounts(Model):
    """Jobs per state group."""

    waiting: int
    active: int
    completed: int
    failed: int


assert list(StateCounts.model_fields) == list(STATES) and list(GroupCounts.model_fields) == list(GROUPS)


class Queue(Model):
    """A queue with its controls and counts (exact up to dashboard.count_cap, then estimated)."""

    name: str
    paused: bool
    concurrency: int | None
    nodes: int = Field(description="Live nodes that run this queue")
    configured: bool
    oldest_available_seconds: float | None
    no_consumer: bool = Field(description="Jobs are waiting and no live node runs this queue")
    counts: StateCounts
    exact: bool = Field(description="false when some count is an estimate")
    groups: GroupCounts


class QueueRef(Model):
    name: str


class QueueList(Model):
    queues: list[Queue]


class QueueAnswer(Model):
    queue: Queue | QueueRef


class QueuePath(Model):
    name: Annotated[Text, Field(description="Queue name")]


class ScaleBody(Model):
    concurrency: int = Field(ge=1, le=10_000, description="Per-node concurrency limit")


class ThroughputPoint(Model):
    minute: IsoTime
    completed: int
    failed: int


class StatsNode(Model):
    name: str
    queues: list[str]
    heartbeat_at: IsoTime


class Stats(Model):
    """The overview: queues, state groups, per-minute throughput of the last hour, live nodes."""

    taken_at: IsoTime
    queues: list[Queue]
    groups: GroupCounts
    throughput: list[ThroughputPoint]
    nodes: list[StatsNode]


# --- cron ---------------------------------------------------------------------------------------


class CronEntry(Model):
    """A cron entry (the fields of engine.cron.store.CronStatus) with its next run."""

    name: str
    schedule: str
    timezone: str
    enabled: bool
    overlap: str
    catch_up: float = Field(description="Seconds")
    source: str
    in_config: bool
    stored: bool
    next_run: IsoTime | None
    next_run_local: IsoTime | None = Field(description="The next run in the entry's timezone")
    last_slot: IsoTime | None
    last_job_id: int | None
    last_job_state: str | None
    error: str | None = Field(description="Why the entry cannot be scheduled on this host")


class CronActionResult(Model):
    """What a cron action did; ``job_id`` is the job ``run`` inserted."""

    name: str
    action: Literal["enable", "disable", "run"]
    job_id: int | None = None


assert set(CronActionResult.model_fields) == set(cron.CronActionResult.__annotations__)


class CronList(Model):
    entries: list[CronEntry]


class CronPath(Model):
    name: Annotated[Text, Field(description="Entry name")]


# --- health -------------------------------------------------------------------------------------


class Health(Model):
    """/healthz: Postgres answers and the engine works (an insert-only engine reports ``mode``)."""

    status: Literal["ok", "unavailable"]
    database: bool
    healthy: bool
    running: bool | None = None
    mode: str | None = None
    listener: str | None = None
    tasks_down: list[str] | None = None
    task_restarts: dict[str, int] | None = None
    heartbeat_age: float | None = None
    pending_acks: int | None = None


# --- nodes and charts ---------------------------------------------------------------------------


class NodeQueue(Model):
    """A queue as the node's last heartbeat described it (older engines send only names)."""

    name: str
    concurrency: int | None
    running: int | None
    paused: bool | None


class NodeIdentity(Model):
    name: str
    host: str | None
    pid: int | None
    version: str | None
    started_at: IsoTime | None
    heartbeat_at: IsoTime | None


class SilentNode(NodeIdentity):
    """A node whose heartbeat is older than the rescue window: its jobs are being rescued."""

    heartbeat_age_seconds: float
    queues: list[NodeQueue]


class LiveNode(SilentNode):
    running: int = Field(description="Jobs running on the node")


class DepartedNode(NodeIdentity):
    """A node that stopped or was lost in the last day, and the jobs rescued from it."""

    departed_at: IsoTime | None
    reason: Literal["stopped", "lost"]
    departed_age_seconds: float
    rescued: int
    rescued_ids: list[int]
    queues: list[str]


class Nodes(Model):
    taken_at: IsoTime
    rescue_after_seconds: float
    nodes: list[LiveNode]
    silent: list[SilentNode]
    departed: list[DepartedNode]


ChartRange = Literal["1h", "24h", "7d"]
Series = list[float | None]


class ChartSeries(Model):
    """One value per step; null where nothing finished or the rollup has not got there.
    Times are milliseconds (a percentile is the upper bound of its histogram bucket)."""

    t: list[int] = Field(description="Each step's start, Unix seconds")
    completed: list[int | None]
    failed: list[int | None]
    failure_rate: Series = Field(description="Percent discarded of completed + discarded")
    wait_p50: Series
    wait_p95: Series
    wait_p99: Series
    run_p50: Series
    run_p95: Series
    run_p99: Series


class Charts(Model):
    range: ChartRange
    step_seconds: int
    since: IsoTime
    queue: str | None
    kind: str | None
    queues: list[str]
    kinds: list[str]
    rolled_until: IsoTime | None
    series: ChartSeries


class ChartQuery(Model):
    range: ChartRange | None = Field(None, description="The span (default 1h)")
    queue: Text | None = Field(None, description="One queue")
    kind: Text | None = Field(None, description="One kind")


# --- users, tokens, audit -----------------------------------------------------------------------


class Token(Model):
    """An API token (never the token itself: only its digest is stored)."""

    id: int
    name: str
    created_at: IsoTime
    last_used_at: IsoTime | None
    revoked_at: IsoTime | None


class User(Model):
    name: str
    role: Role
    can_view_args: bool
    disabled: bool
    created_at: IsoTime
    has_password: bool
    tokens: int = Field(description="Live tokens")
    token_last_used: IsoTime | None
    token_list: list[Token]


class UserList(Model):
    users: list[User]


class NewUser(Model):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    can_view_args: bool = False
    password: str | None = Field(None, description="None: the user logs in through single sign-on only")


class UserPath(Model):
    name: Annotated[str, Field(min_length=1, max_length=100, description="User name")]


class UserChangeBody(Model):
    """At least one of the three."""

    role: Role | None = None
    can_view_args: bool | None = None
    disabled: bool | None = None


class PasswordBody(Model):
    password: str = Field(min_length=1)


class TokenBody(Model):
    name: str | None = Field(None, max_length=100, description="The token's name (default api); revoke: "
                             "only the tokens of this name")


class UserAdded(Model):
    user: str


class UserActionDone(Model):
    user: str
    action: str


class NewToken(Model):
    user: str
    token: str = Field(description="The new token, shown this once")


class TokensRevoked(Model):
    user: str
    revoked: list[int] = Field(description="Ids of the tokens revoked")


class AuditRow(Model):
    id: int
    at: IsoTime
    actor: str
    role: str
    action: str = Field(description="thing.verb, e.g. job.retry")
    target: str | None = Field(description="thing:id, e.g. job:42")
    details: dict[str, Any]


class AuditPage(Model):
    entries: list[AuditRow]
    next: str | None = Field(description="The URL of the next (older) page, or null")


class AuditQuery(Model):
    actor: Text | None = Field(None, description="Only this actor")
    action: Text | None = Field(None, description="Only this action (thing.verb)")
    target: Text | None = Field(None, description="Only this target (thing:id)")
    since: str | None = Field(None, description="An ISO time, or a duration back from now such as 24h")
    before: Cursor | None = Field(None, description="Cursor: rows with a smaller id")
