"""The JSON API of definitions (README, "Managing jobs from the dashboard"): ``/api/definitions...``, ``/api/kinds``
and ``PATCH /api/jobs/{id}``. Invalid input is a 422 whose body names every field
(``{"error", "status", "errors": [{"field", "message"}]}``); a name that exists, a config
definition or a job that has started is a 409; nothing is saved on either."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from engine.core.job import Job
from engine.cron.definition_model import DefinitionInvalid, definition_json
from engine.cron.definitions import DefinitionConflict, DefinitionStore
from engine.engine import Engine
from engine.web.access import hide_document, visible_job
from engine.web.actions import MAX_PAGE, BadRequest, NotFound
from engine.web.audit import record
from engine.web.context import ENGINE, SNAPSHOTS, principal_of
from engine.web.job_edit import edit_job
from engine.web.present import job_summary
from engine.web.stores import NOT_STARTED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def definition_store(engine: Engine) -> DefinitionStore:
    """The started engine's definitions; RuntimeError before ``Engine.start``."""
    if engine.definitions is None:
        raise RuntimeError(NOT_STARTED)
    return engine.definitions


def actor(request: web.Request) -> str:
    """Who made a change, as recorded in created_by/updated_by: the account's name."""
    return principal_of(request).name


def shown(request: web.Request, item: dict[str, Any]) -> dict[str, Any]:
    """A definition as the caller may see it: secrets redacted, and its job document's
    payload ``hidden`` from a viewer who may not view args."""
    item = request.app[ENGINE].secrets.redact(item)
    if not principal_of(request).sees_args and isinstance(item.get("job"), dict):
        item = {**item, "job": hide_document(item["job"])}
    return item


async def audited(request: web.Request, action: str, name: str, **details: Any) -> None:
    """One audit row for a definition action, after it succeeded."""
    await record(request.app[ENGINE], principal_of(request), action, f"definition:{name}", **details)


def invalid_response(request: web.Request, exc: DefinitionInvalid) -> web.Response:
    secrets = request.app[ENGINE].secrets
    errors = [{"field": e.field, "message": secrets.redact_text(e.message)[:1000]} for e in exc.errors]
    return web.json_response({"error": secrets.redact_text(str(exc))[:2000], "status": 422, "errors": errors},
                             status=422)


def handles_errors(handler: Handler) -> Handler:
    """Map the definitions' exceptions to their statuses (422 with fields, 409, 404)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DefinitionInvalid as exc:
            return invalid_response(request, exc)
        except DefinitionConflict as exc:
            return web.json_response({"error": str(exc), "status": 409}, status=409)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
    return wrapped


async def json_body(request: web.Request, *, required: bool = True) -> Any:
    text = await request.text()
    if not text.strip():
        if required:
            raise BadRequest("request body: a JSON object is required")
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def run_json(job: Job, engine: Engine) -> dict[str, Any]:
    """A run in a definition's history: the job's summary, its duration and first error line."""
    data = job_summary(job, engine.secrets)
    duration = None
    if job.attempted_at is not None and job.completed_at is not None:
        duration = round((job.completed_at - job.attempted_at).total_seconds(), 3)
    elif job.attempted_at is not None and job.errors:
        last = job.errors[-1]
        finished = last.get("at") if isinstance(last, dict) else None
        if isinstance(finished, str):
            try:
                duration = round((datetime.fromisoformat(finished) - job.attempted_at).total_seconds(), 3)
            except ValueError:
                duration = None
    error = data.get("error")
    return {**data, "duration": duration, "errorLine": error.splitlines()[0] if error else None}


def _name(request: web.Request) -> str:
    return request.match_info["name"]


def _paging(request: web.Request) -> tuple[int | None, int]:
    def number(key: str, low: int, high: int) -> int | None:
        raw = request.query.get(key, "").strip()
        if not raw:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise BadRequest(f"{key}: must be an integer from {low} to {high}")
        return int(raw)
    return number("before", 1, 2**62), number("limit", 1, MAX_PAGE) or 50


# --- definitions --------------------------------------------------------------------------------

@handles_errors
async def list_definitions(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    items = [definition_json(row, now) for row in await definition_store(request.app[ENGINE]).all()]
    return web.json_response({"definitions": [shown(request, item) for item in items]})


@handles_errors
async def create_definition(request: web.Request) -> web.Response:
    created = await definition_store(request.app[ENGINE]).create(await json_body(request), actor(request))
    await audited(request, "definition.create", created["name"])
    return web.json_response({"definition": shown(request, created)}, status=201)


@handles_errors
async def get_definition(request: web.Request) -> web.Response:
    found = await definition_store(request.app[ENGINE]).get_json(_name(request))
    return web.json_response({"definition": shown(request, found)})


@handles_errors
async def replace_definition(request: web.Request) -> web.Response:
    store = definition_store(request.app[ENGINE])
    replaced = await store.replace(_name(request), await json_body(request), actor(request))
    await audited(request, "definition.update", _name(request))
    return web.json_response({"definition": shown(request, replaced)})


@handles_errors
async def delete_definition(request: web.Request) -> web.Response:
    await definition_store(request.app[ENGINE]).delete(_name(request))
    await audited(request, "definition.delete", _name(request))
    return web.json_response({"deleted": _name(request)})


@handles_errors
async def run_definition(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    if not isinstance(body, dict) or set(body) - {"vars"}:
        raise DefinitionInvalid.single("body", "may only carry {\"vars\": {...}}")
    variables = body.get("vars") or {}
    if not isinstance(variables, dict):
        raise DefinitionInvalid.single("vars", "must be an object of placeholder values")
    engine = request.app[ENGINE]
    try:
        job = await definition_store(engine).run(_name(request), variables)
    except ValueError as exc:  # the saved document no longer inserts (a kind gone, ...)
        raise DefinitionInvalid.single("job", str(exc)) from None
    request.app[SNAPSHOTS].invalidate()
    await audited(request, "definition.run", _name(request), job_id=job.id, vars=sorted(variables))
    summary = visible_job(principal_of(request), job_summary(job, engine.secrets))
    return web.json_response({"jobId": job.id, "job": summary}, status=201)


@handles_errors
async def enable_definition(request: web.Request) -> web.Response:
    changed = await definition_store(request.app[ENGINE]).set_enabled(_name(request), True, actor(request))
    await audited(request, "definition.enable", _name(request))
    return web.json_response({"definition": shown(request, changed)})


@handles_errors
async def disable_definition(request: web.Request) -> web.Response:
    changed = await definition_store(request.app[ENGINE]).set_enabled(_name(request), False, actor(request))
    await audited(request, "definition.disable", _name(request))
    return web.json_response({"definition": shown(request, changed)})


@handles_errors
async def definition_runs(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    store = definition_store(engine)
    name = _name(request)
    if await store.get(name) is None:
        raise LookupError(f"no definition {name!r}")
    before, limit = _paging(request)
    jobs = await store.runs(name, before=before, limit=limit + 1)
    rows = [visible_job(principal_of(request), run_json(job, engine)) for job in jobs[:limit]]
    cursor = {"before": rows[-1]["id"]} if len(jobs) > limit and rows else None
    return web.json_response({"jobs": rows, "next": cursor})


# --- kinds and job edits ------------------------------------------------------------------------

def kinds_json(engine: Engine) -> list[dict[str, Any]]:
    """Every registered kind with its defaults and the JSON Schema of its payload."""
    kinds = []
    for spec in sorted(engine.registry, key=lambda s: s.kind):
        model = spec.args_model
        schema = model.model_json_schema() if model is not None else {"type": "object", "additionalProperties": True}
        doc = inspect.getdoc(model) if model is not None and model.__doc__ else inspect.getdoc(spec.func)
        kinds.append({"kind": spec.kind, "queue": spec.queue, "maxAttempts": spec.max_attempts,
                      "timeout": round(spec.timeout * 1000) if spec.timeout is not None else None,
                      "description": (doc or "").split("\n\n")[0].replace("\n", " ").replace("``", ""),
                      "schema": schema})
    return kinds


async def list_kinds(request: web.Request) -> web.Response:
    return web.json_response({"kinds": kinds_json(request.app[ENGINE])})


def _job_id(request: web.Request) -> int:
    raw = request.match_info["job_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"job id: must be a positive integer, not {raw[:40]!r}")
    return int(raw)


@handles_errors
async def patch_job(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    changes = await json_body(request)
    job = await edit_job(engine, _job_id(request), changes)
    request.app[SNAPSHOTS].invalidate()
    fields = sorted(changes) if isinstance(changes, dict) else []
    await record(engine, principal_of(request), "job.edit", f"job:{job.id}", fields=fields)
    return web.json_response({"job": visible_job(principal_of(request), job_summary(job, engine.secrets))})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/definitions", list_definitions)
    app.router.add_post("/api/definitions", create_definition)
    app.router.add_get("/api/definitions/{name}", get_definition)
    app.router.add_put("/api/definitions/{name}", replace_definition)
    app.router.add_delete("/api/definitions/{name}", delete_definition)
    app.router.add_post("/api/definitions/{name}/run", run_definition)
    app.router.add_post("/api/definitions/{name}/enable", enable_definition)
    app.router.add_post("/api/definitions/{name}/disable", disable_definition)
    app.router.add_get("/api/definitions/{name}/runs", definition_runs)
    app.router.add_get("/api/kinds", list_kinds)
    app.router.add_patch("/api/jobs/{job_id}", patch_job)
