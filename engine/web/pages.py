"""The dashboard's HTML: overview, job list, job detail, cron, login; the fragments that
pages refresh live (``/partials/...``); and the POST actions behind their buttons, which
redirect back with a notice (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from engine.core.search import MAX_QUERY, JobQuery, SearchError, parse_query
from engine.core.secrets import Secrets
from engine.db.sql import DASHBOARD_SEARCH_SCAN_LIMIT as SEARCH_SCAN_LIMIT
from engine.web import actions
from engine.web import cron as cron_entries
from engine.web.access import HIDDEN, check_filter, visible_job, visible_jobs
from engine.web.actions import JobFilter
from engine.web.context import ENGINE, SNAPSHOTS, principal_of, render, safe_next, url
from engine.web.login import login, login_page, logout
from engine.web.present import job_detail, job_summary, json_blocks
from engine.web.stores import job_store

NOTICES = {
    "retry": "Retried {n} job(s).", "cancel": "Cancelled {n} job(s).", "delete": "Deleted {n} job(s).",
    "run": "Made {n} job(s) due now.", "pause": "Paused the queue.", "resume": "Resumed the queue.",
    "scale": "Changed the queue's concurrency.", "enable": "Enabled the cron entry.",
    "disable": "Disabled the cron entry.", "cron-run": "Inserted a job for the cron entry.",
    "more": "Changed {n} job(s); more match the filter: repeat to continue.",
}


def notice(request: web.Request) -> str | None:
    """The message for ``?done=CODE&n=N`` (fixed texts: a link cannot inject one)."""
    template = NOTICES.get(request.query.get("done", ""))
    count = request.query.get("n", "1")
    return template.format(n=int(count) if count.isdigit() else 1) if template else None


def _secrets(request: web.Request) -> Secrets:
    return request.app[ENGINE].secrets


# --- pages -----------------------------------------------------------------------------------

async def overview(request: web.Request) -> web.Response:
    data = await request.app[SNAPSHOTS].overview()
    return render(request, "overview.html", {"nav": "overview", "notice": notice(request), "ov": data})


async def overview_partial(request: web.Request) -> web.Response:
    data = await request.app[SNAPSHOTS].overview()
    return render(request, "_overview.html", {"ov": data})


async def _job_list_context(request: web.Request) -> dict[str, Any]:
    flt = JobFilter.parse(request.query)
    check_filter(principal_of(request), flt)
    jobs, more = await actions.list_jobs(request.app[ENGINE], flt)
    rows = [job_summary(job, _secrets(request)) for job in jobs]
    running = [row["id"] for row in rows if row["state"] == "executing"]
    progress = await job_store(request.app[ENGINE]).attempt_progress(running)
    for row in rows:
        row["progress"] = progress.get(row["id"])
    rows = visible_jobs(principal_of(request), rows)
    next_page = prev_page = None
    if rows:
        forward, back = ("after", "before") if flt.ascending else ("before", "after")
        came_back = getattr(flt, back) is not None
        if more or came_back:
            next_page = url("/jobs", flt.query(**{forward: rows[-1]["id"], back: None}))
        if getattr(flt, forward) is not None or (came_back and more):
            prev_page = url("/jobs", flt.query(**{back: rows[0]["id"], forward: None}))
    live = flt.before is None and flt.after is None  # only the first page follows new jobs
    return {"flt": flt, "rows": rows, "next_page": next_page, "prev_page": prev_page,
            "live_url": url("/partials/jobs", flt.query()) if live else None}


async def jobs_page(request: web.Request) -> web.Response:
    queues = [q.name for q in (await request.app[SNAPSHOTS].overview()).queues]
    page = {"nav": "jobs", "notice": notice(request), "queues": queues, "bulk_max": actions.MAX_BULK_FILTERED,
            "scan_limit": SEARCH_SCAN_LIMIT, "query_error": None}
    try:
        context = await _job_list_context(request)
    except actions.BadRequest as exc:
        # Keep the form (and the query the operator typed) with the error beside it.
        typed = {k: request.query.get(k, "").strip()[:MAX_QUERY] or None
                 for k in ("state", "queue", "kind", "tag", "q")}
        flt = actions.JobFilter(state=typed["state"], queue=typed["queue"], kind=typed["kind"], tag=typed["tag"],
                                q=typed["q"])
        return render(request, "jobs.html", {**page, "query_error": exc.message, "flt": flt, "rows": [],
                                             "next_page": None, "prev_page": None, "live_url": None,
                                             "query": JobQuery()}, status=400)
    return render(request, "jobs.html", {**page, "query": context["flt"].search(), **context})


async def search(request: web.Request) -> web.Response:
    """The header's search box: a job id (``123``, ``#123``, ``id:123``) opens that job;
    anything else lists the matching jobs (where a malformed query shows its error)."""
    text = request.query.get("q", "").strip()
    bare = text.removeprefix("#")
    if bare.isdigit() and 0 < len(bare) <= 18 and int(bare) > 0:
        raise web.HTTPSeeOther(f"/jobs/{int(bare)}")
    try:
        job_id = parse_query(text).job_id
    except SearchError:
        job_id = None
    raise web.HTTPSeeOther(f"/jobs/{job_id}" if job_id else url("/jobs", {"q": text}))


async def jobs_partial(request: web.Request) -> web.Response:
    return render(request, "_jobs.html", await _job_list_context(request))


async def _job_context(request: web.Request) -> dict[str, Any]:
    job_id = _job_id(request)
    job, extra, children = await actions.get_job(request.app[ENGINE], job_id)
    logs = await job_store(request.app[ENGINE]).attempt_logs(job_id)
    shown = visible_job(principal_of(request), {**job_detail(job, extra, children, _secrets(request)),
                                                "attempt_logs": logs})
    return {"job": shown, "attempt_logs": shown["attempt_logs"] if shown["attempt_logs"] != HIDDEN else [],
            "blocks": await json_blocks(shown)}


async def job_page(request: web.Request) -> web.Response:
    context = await _job_context(request)
    return render(request, "job.html", {"nav": "jobs", "notice": notice(request), **context})


async def job_partial(request: web.Request) -> web.Response:
    return render(request, "_job.html", await _job_context(request))


async def cron_page(request: web.Request) -> web.Response:
    entries = await cron_entries.list_entries(request.app[ENGINE])
    return render(request, "cron.html", {"nav": "cron", "notice": notice(request), "entries": entries})


def _job_id(request: web.Request) -> int:
    raw = request.match_info["job_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise actions.NotFound(f"no job {raw}")
    return int(raw)


# --- actions (POST, then redirect back) -----------------------------------------------------

def _back(form: Mapping[str, object], done: str, n: int = 1, default: str = "/") -> web.HTTPSeeOther:
    target = safe_next(str(form.get("next", default)))
    joiner = "&" if "?" in target else "?"
    return web.HTTPSeeOther(f"{target}{joiner}done={done}&n={n}")


async def job_action(request: web.Request) -> web.Response:
    form = await request.post()
    action, job_id = request.match_info["action"], _job_id(request)
    await actions.job_action(request.app[ENGINE], principal_of(request), action, job_id)
    request.app[SNAPSHOTS].invalidate()
    raise _back(form, action, default="/jobs" if action == "delete" else f"/jobs/{job_id}")


async def bulk_action(request: web.Request) -> web.Response:
    form = await request.post()
    action = str(form.get("action", ""))
    if form.get("scope") == "filter":
        result = await actions.bulk_action(request.app[ENGINE], principal_of(request), action,
                                           flt=JobFilter.parse({k: str(v) for k, v in form.items()}))
    else:
        ids = [str(value) for value in form.getall("id", [])]
        if not all(value.isdigit() and len(value) <= 18 for value in ids):
            raise actions.BadRequest("id: job ids are integers")
        result = await actions.bulk_action(request.app[ENGINE], principal_of(request), action,
                                           ids=[int(value) for value in ids])
    request.app[SNAPSHOTS].invalidate()
    raise _back(form, "more" if result["more"] else action, len(result["changed"]), default="/jobs")


async def queue_action(request: web.Request) -> web.Response:
    form = await request.post()
    await actions.queue_action(request.app[ENGINE], principal_of(request), request.match_info["name"],
                               request.match_info["action"], form.get("concurrency"))
    request.app[SNAPSHOTS].invalidate()
    raise _back(form, request.match_info["action"])


async def cron_action(request: web.Request) -> web.Response:
    form = await request.post()
    action = request.match_info["action"]
    await cron_entries.cron_action(request.app[ENGINE], principal_of(request), request.match_info["name"], action)
    raise _back(form, "cron-run" if action == "run" else action, default="/cron")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/jobs", jobs_page)
    app.router.add_get("/search", search)
    app.router.add_get("/jobs/{job_id}", job_page)
    app.router.add_get("/cron", cron_page)
    app.router.add_get("/partials/overview", overview_partial)
    app.router.add_get("/partials/jobs", jobs_partial)
    app.router.add_get("/partials/jobs/{job_id}", job_partial)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/jobs/bulk", bulk_action)
    app.router.add_post("/jobs/{job_id}/{action}", job_action)
    app.router.add_post("/queues/{name}/{action}", queue_action)
    app.router.add_post("/cron/{name}/{action}", cron_action)

