"""What the dashboard and the API do, shared by both: parse filters, act on jobs, queues and
cron entries. Input problems raise :class:`BadRequest` (400), missing things
:class:`NotFound` (404), impossible transitions :class:`Conflict` (409)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import structlog

from engine.core.errors import JobStillStopping, UniqueKeyHeld
from engine.core.job import Job, JobState
from engine.core.search import MAX_QUERY, JobQuery, SearchError, parse_query
from engine.engine import Engine
from engine.web.audit import record
from engine.web.auth import Principal
from engine.web.present import STATES
from engine.web.stores import job_store

log = structlog.get_logger("jobengine.web")
JOB_ACTIONS = ("retry", "cancel", "delete", "run")
QUEUE_ACTIONS = ("pause", "resume", "scale")
CRON_ACTIONS = ("enable", "disable", "run")
MAX_PAGE = 200
MAX_BULK_IDS = 500
# A bulk action on "everything matching the filter" touches at most this many jobs per request.
MAX_BULK_FILTERED = 10_000
MAX_TEXT = 200
# What a bulk action's filter selects by: anything else (a misspelt key, paging) would be
# ignored and widen the set the action touches, so it is refused.
BULK_FILTER_KEYS = ("state", "queue", "kind", "tag", "q")
# A bulk action's audit row lists at most this many of its ids (the count is always exact).
MAX_AUDIT_IDS = 100


class BulkResult(TypedDict):
    """What a bulk action did: ``changed`` lists the ids it changed, ``more`` says that more
    jobs match the filter than one request touches."""

    action: str
    selected: int
    changed: list[int]
    more: bool
    refused: dict[str, str]  # job id -> why the action was refused for it (here: a held unique key)


class ActionError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ActionError):
    status = 400


class NotFound(ActionError):
    status = 404


class Conflict(ActionError):
    status = 409


class Unprocessable(ActionError):
    status = 422


@dataclass(frozen=True, slots=True)
class JobFilter:
    """A job list query, as given in the URL (``/jobs?state=discarded&queue=mail``)."""

    state: str | None = None
    queue: str | None = None
    kind: str | None = None
    tag: str | None = None
    q: str | None = None
    before: int | None = None
    after: int | None = None
    order: str = "newest"
    limit: int = 50

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilter:
        """Validate query parameters; unknown or empty ones are ignored."""
        text = {name: _text(params, name) for name in ("queue", "kind", "tag")}
        state = _text(params, "state")
        if state is not None and state not in STATES:
            raise BadRequest(f"state: must be one of {', '.join(STATES)}")
        order = _text(params, "order") or "newest"
        if order not in ("newest", "oldest"):
            raise BadRequest("order: must be 'newest' or 'oldest'")
        flt = cls(state=state, order=order, before=_int(params, "before", 1, 2**62), q=_text(params, "q", MAX_QUERY),
                  after=_int(params, "after", 1, 2**62), limit=_int(params, "limit", 1, MAX_PAGE) or 50, **text)
        flt.search()  # a malformed query is a 400 naming the term
        return flt

    @classmethod
    def parse_bulk(cls, params: Mapping[str, Any]) -> JobFilter:
        """A bulk action's filter: only :data:`BULK_FILTER_KEYS`, each validated as in
        :meth:`parse`; any other key is a 400 naming it (never ignored)."""
        for key in params:
            if key not in BULK_FILTER_KEYS:
                guess = difflib.get_close_matches(str(key), BULK_FILTER_KEYS, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                raise BadRequest(f"filter: unknown key {str(key)[:MAX_TEXT]!r}{hint}; a bulk filter selects by "
                                 f"{', '.join(BULK_FILTER_KEYS)} (every matching job, up to "
                                 f"{MAX_BULK_FILTERED:,} per request)")
        return cls.parse({k: str(v) for k, v in params.items() if v is not None})

    def search(self) -> JobQuery:
        """The search (``q``: README, "Finding jobs") AND the form's state, queue, kind and tag."""
        try:
            return parse_query(self.q or "").merged(
                states=(JobState(self.state),) if self.state else None, queue=self.queue, kind=self.kind,
                tags=(self.tag,) if self.tag else None)
        except SearchError as exc:
            raise BadRequest(f"q: {exc}") from None

    def query(self, **changes: int | None) -> dict[str, str]:
        """The non-default fields as URL parameters (for links and live refreshes)."""
        values = {**asdict(self), **changes}
        defaults = {"order": "newest", "limit": 50}
        return {k: str(v) for k, v in values.items() if v is not None and defaults.get(k) != v}

    @property
    def ascending(self) -> bool:
        return self.order == "oldest"


def _text(params: Mapping[str, str], name: str, most: int = MAX_TEXT) -> str | None:
    value = params.get(name)
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if len(value) > most or "\x00" in value:
        raise BadRequest(f"{name}: at most {most} characters, no NUL")
    return value


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = _text(params, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer") from None
    if not low <= number <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return number


async def list_jobs(engine: Engine, flt: JobFilter) -> tuple[list[Job], bool]:
    """A page in display order and whether more follow in the paging direction."""
    # Paging back towards the start reads the other way from the cursor, then flips the page.
    flip = (flt.after is not None and not flt.ascending) or (flt.before is not None and flt.ascending)
    jobs = await _page(engine, flt, before=flt.before, after=flt.after, ascending=flt.ascending != flip,
                       limit=flt.limit + 1)
    more = len(jobs) > flt.limit
    jobs = jobs[:flt.limit]
    return (jobs[::-1] if flip else jobs), more


async def _page(engine: Engine, flt: JobFilter, **page: Any) -> list[Job]:
    try:
        return await job_store(engine).dashboard_job_page(query=flt.search(), **page)
    except SearchError as exc:  # a term this installation cannot answer (definition:)
        raise BadRequest(f"q: {exc}") from None


async def get_job(engine: Engine, job_id: int) -> tuple[Job, dict[str, Any], list[dict[str, Any]]]:
    found = await job_store(engine).dashboard_job(job_id)
    if found is None:
        raise NotFound(f"no job {job_id}")
    job, extra = found
    return job, extra, await job_store(engine).dashboard_children(job_id)


async def job_action(engine: Engine, principal: Principal, action: str, job_id: int) -> Job | None:
    """Retry, cancel, delete or run one job now; the job afterwards (None once deleted)."""
    job = await engine.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    try:
        if action == "retry":
            done = await engine.retry(job_id)
        elif action == "cancel":
            done = await engine.cancel(job_id, f"cancelled from the dashboard ({principal.via})")
        elif action == "delete":
            done = await engine.delete(job_id)
        elif action == "run":
            done = bool(await job_store(engine).dashboard_bulk("run", [job_id]))
        else:
            raise NotFound(f"unknown job action {action!r}; use one of {', '.join(JOB_ACTIONS)}")
    except (JobStillStopping, UniqueKeyHeld) as exc:  # a second copy, a second holder of a key
        raise Conflict(str(exc)) from None
    if not done:
        raise Conflict(_refusal(action, job))
    log.info("job action", action=action, job_id=job_id, actor=principal.name, role=principal.role.value,
             via=principal.via)
    await record(engine, principal, f"job.{action}", f"job:{job_id}", kind=job.kind, queue=job.queue)
    return None if action == "delete" else await engine.get(job_id)


def _refusal(action: str, job: Job) -> str:
    why = {
        "retry": "an executing job cannot be retried",
        "cancel": "only unfinished jobs can be cancelled",
        "delete": "an executing job cannot be deleted (cancel it first)",
        "run": "only scheduled or retryable jobs can be run now",
    }[action]
    return f"job {job.id} is {job.state}: {why}"


async def bulk_action(engine: Engine, principal: Principal, action: str, *, ids: list[int] | None = None,
                      flt: JobFilter | None = None) -> BulkResult:
    """Apply ``action`` to the given ids, or to the jobs matching ``flt`` (at most
    MAX_BULK_FILTERED); returns ``{"action", "selected", "changed": [ids], "more"}``."""
    if action not in JOB_ACTIONS:
        raise BadRequest(f"action: must be one of {', '.join(JOB_ACTIONS)}")
    executing: list[int] = []
    more = False
    if flt is not None:
        jobs = await _page(engine, flt, limit=MAX_BULK_FILTERED + 1)
        more = len(jobs) > MAX_BULK_FILTERED
        jobs = jobs[:MAX_BULK_FILTERED]
        selected = [job.id for job in jobs]
        executing = [job.id for job in jobs if job.state == "executing"]
    else:
        selected = list(dict.fromkeys(ids or []))
        if not selected or len(selected) > MAX_BULK_IDS:
            raise BadRequest(f"ids: give 1 to {MAX_BULK_IDS} job ids")
    refused: dict[str, str] = {}
    if action == "retry":  # a job whose key another holds is refused alone, the rest retried
        holders = await job_store(engine).unique_holders(selected)
        refused = {str(i): str(UniqueKeyHeld(i, *holder)) for i, holder in holders.items()}
        selected_for_action = [i for i in selected if i not in holders]
    else:
        selected_for_action = selected
    changed = await job_store(engine).dashboard_bulk(action, selected_for_action,
                                                     f"cancelled from the dashboard ({principal.via})")
    if action == "cancel":
        # Executing jobs must also be stopped on their node: Engine.cancel publishes that.
        rest = executing if flt is not None else [i for i in selected if i not in set(changed)]
        changed += [job_id for job_id in rest if await engine.cancel(job_id, "cancelled from the dashboard")]
    log.info("bulk job action", action=action, selected=len(selected), changed=len(changed),
             actor=principal.name, role=principal.role.value, via=principal.via)
    scope: dict[str, Any] = {"filter": flt.query()} if flt is not None else {"ids": selected[:MAX_AUDIT_IDS]}
    await record(engine, principal, "job.bulk", None, action=action, **scope, selected=len(selected),
                 count=len(changed))
    return {"action": action, "selected": len(selected), "changed": sorted(changed), "more": more,
            "refused": refused}


async def queue_action(engine: Engine, principal: Principal, name: str, action: str,
                       concurrency: object = None) -> None:
    if not name or len(name) > MAX_TEXT:
        raise BadRequest(f"queue: 1 to {MAX_TEXT} characters")
    details: dict[str, int] = {}
    if action == "pause":
        await engine.pause(name)
    elif action == "resume":
        await engine.resume(name)
    elif action == "scale":
        value = _int({"concurrency": str(concurrency)} if concurrency is not None else {}, "concurrency", 1, 10_000)
        if value is None or isinstance(concurrency, bool):
            raise BadRequest("concurrency: required, an integer from 1 to 10000")
        await engine.scale(name, value)
        details["concurrency"] = value
    else:
        raise NotFound(f"unknown queue action {action!r}; use one of {', '.join(QUEUE_ACTIONS)}")
    log.info("queue action", action=action, queue=name, concurrency=concurrency, actor=principal.name,
             role=principal.role.value)
    await record(engine, principal, f"queue.{action}", f"queue:{name}", **details)
