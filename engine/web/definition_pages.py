"""The dashboard's Definitions pages: the list (filter by kind, tag, enabled, name), a
definition's detail (document, trigger, next 5 runs, its run history paged), and the
create/edit form built from the kind's schema. A form with problems comes back with each
message beside its field and nothing saved (post/redirect/get once it is valid)."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from cron_descriptor import ExpressionDescriptor, FormatException, Options

from engine.cron.definition_model import DefinitionInvalid, definition_json, next_runs, parse_body, parsed_schedule
from engine.cron.definitions import DefinitionConflict
from engine.cron.schedule import CronConfigError
from engine.web.access import hide_document, visible_jobs
from engine.web.actions import BadRequest, NotFound
from engine.web.context import ENGINE, SNAPSHOTS, principal_of, render, safe_next, url
from engine.web.definition_form import body_from_form, body_to_form, schema_fields
from engine.web.definitions_api import actor, audited, definition_store, kinds_json, run_json, shown

PAGE_SIZE = 50
NOTICES = {"saved": "Saved the definition.", "run": "Inserted a run: job #{job}.", "enable": "Enabled.",
           "disable": "Disabled.", "delete": "Deleted the definition (its jobs stay)."}


def trigger_words(trigger: dict[str, Any]) -> str:
    """A trigger in plain words: a cron schedule as cron-descriptor reads it
    ("At 02:00"), once as its instant, manual as "run by hand"."""
    if trigger["type"] == "once":
        return f"Once, at {trigger['at'][:16].replace('T', ' ')} UTC"
    if trigger["type"] != "cron":
        return "Manual (run by hand)"
    return _cron_words(trigger["schedule"], trigger["timezone"])


@functools.lru_cache(maxsize=4096)
def _cron_words(schedule: str, timezone: str) -> str:
    # Remembered: describing takes about a millisecond, and the list describes every definition.
    try:
        options = Options()
        options.use_24hour_time_format = True
        return str(ExpressionDescriptor(parsed_schedule(schedule, timezone).croniter_expr, options).get_description())
    except (CronConfigError, FormatException, ValueError, KeyError):
        return schedule


def _notice(request: web.Request) -> str | None:
    template = NOTICES.get(request.query.get("done", ""))
    job = request.query.get("job", "")
    return template.format(job=job if job.isdigit() else "?") if template else None


async def list_page(request: web.Request) -> web.Response:
    """One page of PAGE_SIZE definitions by name, filtered in SQL: the page reads only the
    rows it shows, at any number of definitions."""
    query = {key: request.query.get(key, "").strip()[:200] for key in ("kind", "tag", "enabled", "q", "after")}
    store = definition_store(request.app[ENGINE])
    rows = await store.page(kind=query["kind"] or None, tag=query["tag"] or None,
                            enabled={"yes": True, "no": False}.get(query["enabled"]), text=query["q"] or None,
                            after=query["after"] or None, limit=PAGE_SIZE + 1)
    now = datetime.now(UTC)
    items = [definition_json(row, now) for row in rows[:PAGE_SIZE]]
    for item in items:
        item["words"] = trigger_words(item["trigger"])
    facets = await store.facets()
    following = url("/definitions", {**query, "after": items[-1]["name"]}) if len(rows) > PAGE_SIZE else None
    first = url("/definitions", {**query, "after": None}) if query["after"] else None
    return render(request, "definitions.html", {
        "nav": "definitions", "notice": _notice(request), "items": items, "total": facets["total"],
        "query": query, "kinds": facets["kinds"], "tags": facets["tags"], "following": following, "first": first})


async def detail_page(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    store = definition_store(engine)
    name = request.match_info["name"]
    row = await store.get(name)
    if row is None:
        raise NotFound(f"no definition {name!r}")
    now = datetime.now(UTC)
    item = shown(request, definition_json(row, now))
    zone = _zone(row["timezone"])
    upcoming = [(slot.astimezone(zone), slot) for slot in next_runs(row, now, 5)]
    before = request.query.get("before", "")
    jobs = await store.runs(name, before=int(before) if before.isdigit() else None, limit=26)
    runs = visible_jobs(principal_of(request), [run_json(job, engine) for job in jobs[:25]])
    older = url(f"/definitions/{quote(name)}", {"before": runs[-1]["id"]}) if len(jobs) > 25 else None
    return render(request, "definition.html", {
        "nav": "definitions", "notice": _notice(request), "d": item, "words": trigger_words(item["trigger"]),
        "upcoming": upcoming, "runs": runs, "older": older, "newest": url(f"/definitions/{quote(name)}") if before
        else None})


async def trigger_preview(request: web.Request) -> web.Response:
    """The next 5 runs of the trigger being edited (an HTML fragment the form shows live),
    or the problem with it, named as the save would name it."""
    form = {f"trigger.{key}": value for key, value in request.query.items()}
    body, problems = body_from_form(form, None)
    now = datetime.now(UTC)
    runs: list[tuple[datetime, datetime]] = []
    if not problems:
        try:
            row = parse_body({"name": "trigger-preview", "trigger": body["trigger"], "job": {}}, now=now).row()
        except DefinitionInvalid as exc:
            problems = {e.field: e.message for e in exc.errors if e.field.startswith("trigger")}
        else:
            zone = _zone(row["timezone"])
            runs = [(slot.astimezone(zone), slot) for slot in next_runs(
                {**row, "active_since": now, "last_slot": None}, now, 5)]
    return render(request, "_trigger_preview.html", {"runs": runs, "problems": problems,
                                                     "words": trigger_words(_trigger_shape(body["trigger"]))})


def _trigger_shape(trigger: dict[str, Any]) -> dict[str, Any]:
    return {"timezone": "UTC", "schedule": "", "at": "", **trigger}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _kind_schema(request: web.Request, kind: str) -> dict[str, Any] | None:
    return next((k["schema"] for k in kinds_json(request.app[ENGINE]) if k["kind"] == kind), None)


def _form(request: web.Request, values: dict[str, str], *, editing: str | None, errors: dict[str, str] | None = None,
          status: int = 200) -> web.Response:
    kinds = kinds_json(request.app[ENGINE])
    kind = values.get("kind") or "log"
    schema = _kind_schema(request, kind)
    fields = schema_fields(schema or {})
    errors = errors or {}
    placed = {f"job.data.{f.name}" for f in fields} | {"name", "description", "tags", "job.data", "raw_job"} | {
        f"trigger.{key}" for key in ("type", "schedule", "timezone", "overlap", "catchUp", "at")} | {
        f"job.{key}" for key in ("queue", "priority", "attempts", "timeout")}
    loose = {field: message for field, message in errors.items() if field not in placed}
    return render(request, "definition_form.html", {
        "nav": "definitions", "notice": None, "values": values, "editing": editing, "kinds": kinds, "kind": kind,
        "job": None, "one_off": False,
        "fields": fields, "schema_known": schema is not None, "errors": errors, "loose": loose,
        "secrets": request.app[ENGINE].secrets.names}, status=status)


async def new_page(request: web.Request) -> web.Response:
    """An empty form, or (``?from=NAME``) a copy of a definition to save under a new name."""
    source = request.query.get("from", "")
    if source:
        found = await _definition(request, source)
        values = {**body_to_form(request.app[ENGINE].secrets.redact(found)), "name": f"{source}-copy"[:63],
                  "updatedAt": ""}
    else:
        values = {"kind": request.query.get("kind", "log"), "enabled": "on", "trigger.type": "manual",
                  "trigger.timezone": "UTC"}
    return _form(request, values, editing=None)


async def edit_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    document = await _definition(request, name)
    if not principal_of(request).sees_args and isinstance(document.get("job"), dict):
        document = {**document, "job": hide_document(document["job"])}  # a viewer may look, not read args
    return _form(request, body_to_form(document), editing=name)


async def _definition(request: web.Request, name: str) -> dict[str, Any]:
    try:
        return await definition_store(request.app[ENGINE]).get_json(name)
    except LookupError as exc:
        raise NotFound(str(exc)) from None


async def save(request: web.Request) -> web.Response:
    """Create (no name in the path) or replace; the form again with errors beside fields."""
    editing = request.match_info.get("name")
    form = {key: str(value) for key, value in (await request.post()).items()}
    if form.get("switch"):  # the kind picker changed: redraw the fields of the new kind, save nothing
        return _form(request, form, editing=editing)
    body, problems = body_from_form(form, _kind_schema(request, form.get("kind", "")))
    store = definition_store(request.app[ENGINE])
    try:
        if problems:
            raise DefinitionInvalid.from_mapping(problems)
        if editing:
            await store.replace(editing, body, actor(request))
        else:
            await store.create(body, actor(request))
        await audited(request, "definition.update" if editing else "definition.create", str(body["name"]))
    except DefinitionInvalid as exc:
        errors = {e.field: request.app[ENGINE].secrets.redact_text(e.message) for e in exc.errors}
        return _form(request, form, editing=editing, errors=errors, status=422)
    except DefinitionConflict as exc:
        return _form(request, form, editing=editing, errors={"name": str(exc)}, status=409)
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    raise web.HTTPSeeOther(f"/definitions/{quote(body['name'])}?done=saved")


async def action(request: web.Request) -> web.Response:
    name, verb = request.match_info["name"], request.match_info["action"]
    form = await request.post()
    store = definition_store(request.app[ENGINE])
    target = safe_next(str(form.get("next", f"/definitions/{quote(name)}")))
    extra = ""
    try:
        if verb == "run":
            raw = str(form.get("vars", "")).strip()
            variables = _vars(raw)
            job = await store.run(name, variables)
            request.app[SNAPSHOTS].invalidate()
            extra = f"&job={job.id}"
            await audited(request, "definition.run", name, job_id=job.id, vars=sorted(variables))
        elif verb in ("enable", "disable"):
            await store.set_enabled(name, verb == "enable", actor(request))
            await audited(request, f"definition.{verb}", name)
        elif verb == "delete":
            await store.delete(name)
            await audited(request, "definition.delete", name)
            target = "/definitions"
        else:
            raise NotFound(f"unknown definition action {verb!r}")
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    except (DefinitionConflict, ValueError) as exc:
        return render(request, "error.html", {"status": 409, "message": str(exc)}, status=409)
    joiner = "&" if "?" in target else "?"
    raise web.HTTPSeeOther(f"{target}{joiner}done={verb}{extra}")


def _vars(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"vars: not valid JSON ({exc}); give an object such as {{\"who\": \"ops\"}}") from None
    if not isinstance(value, dict):
        raise BadRequest("vars: give a JSON object such as {\"who\": \"ops\"}")
    return value


def add_routes(app: web.Application) -> None:
    app.router.add_get("/definitions", list_page)
    app.router.add_get("/definitions/new", new_page)
    app.router.add_get("/definitions/preview", trigger_preview)
    app.router.add_post("/definitions/new", save)
    app.router.add_get("/definitions/{name}", detail_page)
    app.router.add_get("/definitions/{name}/edit", edit_page)
    app.router.add_post("/definitions/{name}/edit", save)
    app.router.add_post("/definitions/{name}/{action}", action)
