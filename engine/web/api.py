"""The JSON API under ``/api/`` (described by ``/api/openapi.json``), ``/metrics`` and
``/healthz``. Errors are ``{"error": message, "status": code}``; bad input is a 4xx, never
a 500."""

from __future__ import annotations

import codecs
import json
from typing import Any

from aiohttp import web

from engine.engine import Engine
from engine.queues.threads import ThreadPools
from engine.web import actions
from engine.web import cron as cron_entries
from engine.web.access import check_filter, visible_job, visible_jobs
from engine.web.actions import BadRequest, JobFilter
from engine.web.alerts import alert_gauges
from engine.web.audit import record
from engine.web.context import ENGINE, METRICS, SNAPSHOTS, principal_of
from engine.web.metrics import Gauge, Labels
from engine.web.openapi import openapi_document
from engine.web.present import job_detail, job_summary
from engine.web.snapshot import Overview
from engine.web.stores import job_store

MAX_JOB_ID = 2**63 - 1  # job ids are Postgres bigints


async def _body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body."""
    text = await body_text(request)
    if not text.strip():
        if required:
            raise BadRequest("request body: a JSON object is required")
        return {}
    try:
        body = json.loads(text)
    except RecursionError:
        raise BadRequest("request body: JSON nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body: must be a JSON object")
    return body


async def body_text(request: web.Request) -> str:
    """The body decoded by its declared charset (UTF-8 by default); an unknown charset or bytes
    that are not in it are a 400 naming the problem."""
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise BadRequest(f"request body: unknown charset {charset[:40]!r}; send UTF-8") from None
    raw = await request.read()
    try:
        return raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid {charset[:40]}: byte {exc.start} "
                         f"({raw[exc.start:exc.start + 1]!r})") from None


def _job_id(request: web.Request) -> int:
    raw = request.match_info["job_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"job id: must be a positive integer, not {raw[:40]!r}")
    return int(raw)


# --- jobs ------------------------------------------------------------------------------------

async def list_jobs(request: web.Request) -> web.Response:
    flt = JobFilter.parse(request.query)
    check_filter(principal_of(request), flt)
    jobs, more = await actions.list_jobs(request.app[ENGINE], flt)
    secrets = request.app[ENGINE].secrets
    rows = visible_jobs(principal_of(request), [job_summary(job, secrets) for job in jobs])
    cursor = None
    if more and rows:
        cursor = {("after" if flt.ascending else "before"): rows[-1]["id"]}
    return web.json_response({"jobs": rows, "next": cursor})


async def enqueue(request: web.Request) -> web.Response:
    document = await _body(request)
    kind = request.query.get("kind") or None
    try:
        job = await request.app[ENGINE].enqueue_document(document, kind=kind)
    except ValueError as exc:  # DocumentError, EnqueueError, SecretValueInArgsError: the message names it
        raise actions.Unprocessable(str(exc)[:2000]) from None
    request.app[SNAPSHOTS].invalidate()
    await record(request.app[ENGINE], principal_of(request), "job.enqueue", f"job:{job.id}", kind=job.kind,
                 queue=job.queue)
    return web.json_response({"job": job_summary(job, request.app[ENGINE].secrets)}, status=201)


async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job, extra, children = await actions.get_job(request.app[ENGINE], job_id)
    detail = job_detail(job, extra, children, request.app[ENGINE].secrets)
    logs = [{**entry, "updated_at": entry["updated_at"].isoformat()}
            for entry in await job_store(request.app[ENGINE]).attempt_logs(job_id)]
    return web.json_response({"job": visible_job(principal_of(request), {**detail, "attempt_logs": logs})})


async def job_action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in actions.JOB_ACTIONS:
        raise actions.NotFound(f"unknown job action {action!r}; use one of {', '.join(actions.JOB_ACTIONS)}")
    job_id = _job_id(request)
    job = await actions.job_action(request.app[ENGINE], principal_of(request), action, job_id)
    request.app[SNAPSHOTS].invalidate()
    if job is None:
        return web.json_response({"deleted": job_id})
    return web.json_response({"job": job_summary(job, request.app[ENGINE].secrets)})


async def delete_job(request: web.Request) -> web.Response:
    """``DELETE /api/jobs/{id}``: the same as ``POST /api/jobs/{id}/delete``."""
    job_id = _job_id(request)
    await actions.job_action(request.app[ENGINE], principal_of(request), "delete", job_id)
    request.app[SNAPSHOTS].invalidate()
    return web.json_response({"deleted": job_id})


async def bulk(request: web.Request) -> web.Response:
    body = await _body(request)
    action = body.get("action")
    if not isinstance(action, str):
        raise BadRequest(f"action: required, one of {', '.join(actions.JOB_ACTIONS)}")
    if ("ids" in body) == ("filter" in body):
        raise BadRequest("give exactly one of 'ids' (a list of job ids) and 'filter' (an object)")
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                and 0 < i <= MAX_JOB_ID for i in ids):
            raise BadRequest(f"ids: must be a list of job ids (integers from 1 to {MAX_JOB_ID})")
        result = await actions.bulk_action(request.app[ENGINE], principal_of(request), action, ids=ids)
    else:
        if not isinstance(body["filter"], dict):
            raise BadRequest("filter: must be an object like {\"state\": \"discarded\", \"queue\": \"mail\"}")
        flt = JobFilter.parse_bulk(body["filter"])
        result = await actions.bulk_action(request.app[ENGINE], principal_of(request), action, flt=flt)
    request.app[SNAPSHOTS].invalidate()
    return web.json_response(result)


# --- queues and stats ------------------------------------------------------------------------

async def queues(request: web.Request) -> web.Response:
    overview = await request.app[SNAPSHOTS].overview()
    return web.json_response({"queues": [queue.as_dict() for queue in overview.queues]})


async def queue_action(request: web.Request) -> web.Response:
    name, action = request.match_info["name"], request.match_info["action"]
    body = await _body(request, required=action == "scale")
    await actions.queue_action(request.app[ENGINE], principal_of(request), name, action, body.get("concurrency"))
    snapshots = request.app[SNAPSHOTS]
    snapshots.invalidate()
    overview = await snapshots.overview()
    found = next((q.as_dict() for q in overview.queues if q.name == name), None)
    return web.json_response({"queue": found or {"name": name}})


async def stats(request: web.Request) -> web.Response:
    return web.json_response((await request.app[SNAPSHOTS].overview()).as_dict())


# --- cron ------------------------------------------------------------------------------------

async def cron_list(request: web.Request) -> web.Response:
    return web.json_response({"entries": await cron_entries.list_entries(request.app[ENGINE])})


async def cron_action(request: web.Request) -> web.Response:
    result = await cron_entries.cron_action(request.app[ENGINE], principal_of(request),
                                            request.match_info["name"], request.match_info["action"])
    return web.json_response(result)


# --- documents, metrics, health ----------------------------------------------------------------

async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def database_gauges(overview: Overview) -> list[Gauge]:
    """Gauges that describe the whole cluster, read from Postgres."""
    jobs = Gauge("jobengine_jobs", "Jobs per queue and state (exact up to dashboard.count_cap, then estimated).")
    paused = Gauge("jobengine_queue_paused", "1 when the queue is paused.")
    concurrency = Gauge("jobengine_queue_concurrency", "Per-node concurrency limit of the queue.")
    oldest = Gauge("jobengine_queue_oldest_available_seconds", "How long the oldest due job has waited.")
    for queue in overview.queues:
        label = (("queue", queue.name),)
        for state, count in queue.counts.items():
            jobs.samples[(*label, ("state", state))] = count.value
        paused.samples[label] = float(queue.paused)
        if queue.concurrency is not None:
            concurrency.samples[label] = queue.concurrency
        oldest.samples[label] = queue.oldest_wait or 0.0
    nodes = Gauge("jobengine_nodes", "Engine processes heartbeating.", {(): len(overview.nodes)})
    return [jobs, paused, concurrency, oldest, nodes]


def thread_gauges(threads: ThreadPools) -> list[Gauge]:
    """Sync handlers' threads in this process: a thread cannot be killed, so one whose attempt
    timed out runs on (a straggler) until its function returns."""
    return [Gauge("jobengine_sync_stragglers", "Sync handler threads still running after their attempt ended.",
                  {(): threads.stragglers}),
            Gauge("jobengine_sync_abandoned", "Sync handler threads ever abandoned by their attempt (timeout, "
                  "cancel, stop) in this process.", {(): threads.abandoned})]


def supervisor_gauges(engine: Engine) -> list[Gauge]:
    """While this process processes jobs: restarts of its tasks that ended early (a bug; every
    task from 0, so rate() and alerts see the first one), and stalls of its event loop (a
    handler that blocks it)."""
    supervisor = engine.supervisor
    if supervisor is None:
        return []
    restarts: dict[Labels, float] = {(("task", name),): float(supervisor.task_restarts[name])
                for name in {*supervisor.task_names, *supervisor.task_restarts}}
    return [Gauge("jobengine_task_restarts_total", "Times an engine task (a queue's producer, the acker, the "
                  "lifeline, ...) ended unexpectedly and was restarted.", restarts, counter=True),
            Gauge("jobengine_loop_stalls_total", "Times this process's event loop ran nothing for over "
                  "lifeline.stall_warning seconds.", {(): supervisor.loop_stalls}, counter=True),
            Gauge("jobengine_loop_longest_stall_seconds", "The longest stall of this process's event loop.",
                  {(): supervisor.longest_stall_seconds})]


async def metrics(request: web.Request) -> web.Response:
    up = await job_store(request.app[ENGINE]).ping()
    gauges = [Gauge("jobengine_database_up", "1 when Postgres answered this scrape.", {(): float(up)})]
    if up:
        overview = await request.app[SNAPSHOTS].overview()
        gauges += database_gauges(overview) + alert_gauges(overview, request.app[ENGINE].config)
    gauges += thread_gauges(request.app[ENGINE].executor.threads) + supervisor_gauges(request.app[ENGINE])
    body, content_type = request.app[METRICS].exposition(gauges, request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    """200 when Postgres answers and the engine works (its tasks alive, heartbeats landing,
    LISTEN connected or known unavailable), else 503; no job data (this route needs no token)."""
    engine = request.app[ENGINE]
    up = await job_store(engine).ping()
    health = engine.health()
    healthy = up and bool(health["healthy"])
    body = {**health, "status": "ok" if healthy else "unavailable", "database": up, "healthy": healthy}
    return web.json_response(body, status=200 if healthy else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_post("/api/jobs", enqueue)
    app.router.add_post("/api/jobs/bulk", bulk)
    app.router.add_get("/api/jobs/{job_id}", get_job)
    app.router.add_delete("/api/jobs/{job_id}", delete_job)
    app.router.add_post("/api/jobs/{job_id}/{action}", job_action)
    app.router.add_get("/api/queues", queues)
    app.router.add_post("/api/queues/{name}/{action}", queue_action)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/cron", cron_list)
    app.router.add_post("/api/cron/{name}/{action}", cron_action)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
