"""One-off jobs from the dashboard, with the definitions' form: New job (``/jobs/new``, or
``?from=ID`` to duplicate any job), and Edit on a job that has not started
(``/jobs/{id}/edit``: its data, priority, scheduled time, tags, queue, attempts).

A new job is checked exactly as a definition's job is (the document parser, the kind's
args model, the inserter), so a misspelled or missing field is shown beside its input and
nothing is enqueued. An edit goes through ``PATCH /api/jobs/{id}``'s state-guarded update:
one that races the job's claim lands before it or is refused, and a running job is never
changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from engine.core.documents import spec_to_document
from engine.core.job import Job, JobSpec
from engine.cron.definition_model import DefinitionInvalid
from engine.web.access import hide_document
from engine.web.actions import Conflict, NotFound
from engine.web.audit import record
from engine.web.context import ENGINE, SNAPSHOTS, principal_of, render
from engine.web.definition_form import body_from_form, body_to_form, schema_fields
from engine.web.definitions_api import definition_store, kinds_json
from engine.web.job_edit import EDITABLE_STATES, edit_job

ONE_OFF = "one-off"  # the name a one-off job's document is checked under (it names no definition)


def _schema(request: web.Request, kind: str) -> dict[str, Any] | None:
    return next((k["schema"] for k in kinds_json(request.app[ENGINE]) if k["kind"] == kind), None)


def _form(request: web.Request, values: dict[str, str], *, job: Job | None = None,
          errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    kind = values.get("kind") or "log"
    return render(request, "job_form.html", {
        "nav": "jobs", "notice": None, "values": values, "job": job, "one_off": True,
        "kinds": kinds_json(request.app[ENGINE]),
        "kind": kind,
        "fields": schema_fields(_schema(request, kind) or {}), "schema_known": _schema(request, kind) is not None,
        "errors": errors or {}, "secrets": request.app[ENGINE].secrets.names}, status=status)


def _document_values(document: dict[str, Any]) -> dict[str, str]:
    """A job document as the shared form's values (the definitions form's job part)."""
    values = body_to_form({"name": ONE_OFF, "trigger": {"type": "manual"}, "job": document,
                           "tags": document.get("tags", [])})
    values.pop("name", None)
    return values


async def _job(request: web.Request, raw: str | None = None) -> Job:
    raw = request.match_info["job_id"] if raw is None else raw
    job = await request.app[ENGINE].get(int(raw)) if raw.isdigit() and len(raw) <= 18 else None
    if job is None:
        raise NotFound(f"no job {raw[:40]!r}")
    return job


def _copyable(request: web.Request, job: Job) -> dict[str, Any]:
    """The job's document as the caller may see it (a viewer without the flag gets its shape)."""
    spec = JobSpec(kind=job.kind, args=job.args, queue=job.queue, priority=job.priority,
                   max_attempts=job.max_attempts, tags=tuple(job.tags))
    document = request.app[ENGINE].secrets.redact(spec_to_document(spec))
    return document if principal_of(request).sees_args else hide_document(document)


async def new_page(request: web.Request) -> web.Response:
    """An empty form for ``?kind=``, or (``?from=ID``) a copy of any job, to enqueue as a new one."""
    source = request.query.get("from", "")
    if source:
        values = _document_values(_copyable(request, await _job(request, source)))
    else:
        values = {"kind": request.query.get("kind", "log")}
    return _form(request, values)


async def create(request: web.Request) -> web.Response:
    form = {key: str(value) for key, value in (await request.post()).items()}
    if form.get("switch"):  # the kind picker changed: redraw the fields of the new kind, enqueue nothing
        return _form(request, form)
    body, problems = body_from_form({**form, "name": ONE_OFF, "trigger.type": "manual"},
                                    _schema(request, form.get("kind", "")))
    engine = request.app[ENGINE]
    document = body["job"]
    if body["tags"]:
        document = {**document, "tags": body["tags"]}
    errors = dict(problems) or {e.field: engine.secrets.redact_text(e.message)
                                for e in definition_store(engine).job_errors(ONE_OFF, document)}
    if errors:
        return _form(request, form, errors=errors, status=422)
    job = await engine.enqueue_document(document)
    request.app[SNAPSHOTS].invalidate()
    await record(engine, principal_of(request), "job.enqueue", f"job:{job.id}", kind=job.kind, via_form=True)
    raise web.HTTPSeeOther(f"/jobs/{job.id}?done=enqueued")


async def edit_page(request: web.Request) -> web.Response:
    job = await _job(request)
    if job.state not in EDITABLE_STATES:
        raise Conflict(f"job {job.id} is {job.state}: only scheduled, available or retryable jobs can be edited")
    values = _document_values(_copyable(request, job))
    values["scheduledAt"] = job.scheduled_at.isoformat(timespec="seconds") if job.scheduled_at else ""
    return _form(request, values, job=job)


async def save_edit(request: web.Request) -> web.Response:
    job = await _job(request)
    form = {key: str(value) for key, value in (await request.post()).items()}
    body, problems = body_from_form({**form, "name": ONE_OFF, "trigger.type": "manual", "kind": job.kind},
                                    _schema(request, job.kind))
    patch: dict[str, Any] = {"data": body["job"].get("data", {}), "tags": body["tags"]}
    for option, key in (("priority", "priority"), ("attempts", "attempts"), ("queue", "queue")):
        if option in body["job"]:
            patch[key] = body["job"][option]
    if form.get("scheduledAt", "").strip():
        try:
            patch["scheduledAt"] = datetime.fromisoformat(form["scheduledAt"].strip()).isoformat()
        except ValueError:
            problems["scheduledAt"] = "not a date and time (e.g. 2026-12-24T02:00:00+09:00)"
    engine = request.app[ENGINE]
    try:
        if problems:
            raise DefinitionInvalid.from_mapping(problems)
        await edit_job(engine, job.id, patch)
    except DefinitionInvalid as exc:
        errors = {_form_field(e.field): engine.secrets.redact_text(e.message) for e in exc.errors}
        return _form(request, form, job=job, errors=errors, status=422)
    request.app[SNAPSHOTS].invalidate()
    await record(engine, principal_of(request), "job.edit", f"job:{job.id}", fields=sorted(patch))
    raise web.HTTPSeeOther(f"/jobs/{job.id}?done=edited")


def _form_field(field: str) -> str:
    """A PATCH problem's field (``data.port``, ``priority``) as the shared form names it."""
    if field.startswith("data"):
        return "job." + field
    return f"job.{field}" if field in ("priority", "attempts", "queue") else field


def add_routes(app: web.Application) -> None:
    app.router.add_get("/jobs/new", new_page)
    app.router.add_post("/jobs/new", create)
    app.router.add_get("/jobs/{job_id}/edit", edit_page)
    app.router.add_post("/jobs/{job_id}/edit", save_edit)

