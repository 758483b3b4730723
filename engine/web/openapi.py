"""The OpenAPI 3.1 document served at ``/api/openapi.json``. The API tests call every
operation listed here and validate each answer against the schema documented for it."""

from __future__ import annotations

from typing import Any

from engine.web.actions import BULK_FILTER_KEYS, CRON_ACTIONS, JOB_ACTIONS, MAX_BULK_IDS, MAX_PAGE
from engine.web.alerts_openapi import alert_paths, alert_schemas
from engine.web.definitions_openapi import definition_paths, definition_schemas, job_patch_operation
from engine.web.present import GROUPS, STATES

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad input", 401: "No or wrong credentials", 403: "Forbidden: read-only, cross-site or CSRF",
            404: "Not found", 409: "Not possible in the job's state", 422: "Invalid job document",
            503: "Database unreachable"}
    return {str(code): _json(_ref("Error"), text[code]) for code in (401, *codes)}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


JOB_ID = _path_param("job_id", {"type": "integer", "minimum": 1}, "Job id")
TEXT = {"type": "string", "maxLength": 200}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "status"],
              "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
    "Job": {
        "type": "object",
        "required": ["id", "state", "group", "queue", "kind", "attempt", "max_attempts", "priority", "tags", "args"],
        "properties": {
            "id": {"type": "integer"}, "state": {"enum": list(STATES)}, "group": {"enum": list(GROUPS)},
            "queue": {"type": "string"}, "kind": {"type": "string"}, "attempt": {"type": "integer"},
            "max_attempts": {"type": "integer"}, "priority": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "args": {"description": "Stored args (placeholders unrendered; secrets shown as ***)"},
            "error": {"type": ["string", "null"], "description": "The last attempt's error"},
            "scheduled_at": NULLABLE_TIME, "inserted_at": NULLABLE_TIME, "attempted_at": NULLABLE_TIME,
            "completed_at": NULLABLE_TIME,
        },
    },
    "JobDetail": {"allOf": [_ref("Job"), {
        "type": "object",
        "required": ["document", "errors", "children", "timeline"],
        "properties": {
            "document": {"type": "object", "description": "The job as a job document (docs/job-documents.md)"},
            "meta": {"type": "object"}, "result": {}, "attempted_by": {"type": ["string", "null"]},
            "errors": {"type": "array", "items": {"type": "object", "properties": {
                "attempt": {"type": "integer"}, "at": {"type": "string"}, "kind": {"type": "string"},
                "error": {"type": "string"}, "traceback": {"type": "string"}}}},
            "timeout": {"type": ["number", "null"]}, "rescued": {"type": "integer"},
            "cancelled_at": NULLABLE_TIME, "discarded_at": NULLABLE_TIME,
            "parent_id": {"type": ["integer", "null"]},
            "children": {"type": "array", "items": {"type": "object", "required": ["id", "kind", "queue", "state"]}},
            "timeline": {"type": "array", "items": {"type": "object", "required": ["at", "event", "detail"]}},
        }}]},
    "JobPage": {"type": "object", "required": ["jobs", "next"], "properties": {
        "jobs": {"type": "array", "items": _ref("Job")},
        "next": {"type": ["object", "null"], "description": "Query parameters of the next page, or null",
                 "additionalProperties": {"type": "integer"}}}},
    "JobDocument": {"type": "object", "required": [], "description": (
        "A job document: {\"jobType\": \"http\", \"data\": {...}, \"queue\", \"priority\", \"delay\" (ms), "
        "\"attempts\", \"timeout\" (ms), \"tags\", \"vars\", \"unique\", \"onSuccess\", \"onFailure\", "
        "\"condition\", \"failureNotification\"}")},
    "BulkRequest": {"type": "object", "required": ["action"], "properties": {
        "action": {"enum": list(JOB_ACTIONS)},
        "ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": MAX_BULK_IDS},
        "filter": {"type": "object", "additionalProperties": False,
                   "properties": {key: {"type": "string"} for key in BULK_FILTER_KEYS},
                   "description": "as GET /api/jobs; any other key is a 400"}}},
    "BulkResult": {"type": "object", "required": ["action", "selected", "changed", "more"], "properties": {
        "action": {"enum": list(JOB_ACTIONS)}, "selected": {"type": "integer"},
        "changed": {"type": "array", "items": {"type": "integer"}}, "more": {"type": "boolean"},
        "refused": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "job id -> why the action was refused for that job"}}},
    "Queue": {"type": "object", "required": ["name", "paused", "counts", "groups", "exact"], "properties": {
        "name": {"type": "string"}, "paused": {"type": "boolean"}, "concurrency": {"type": ["integer", "null"]},
        "nodes": {"type": "integer"}, "configured": {"type": "boolean"},
        "oldest_available_seconds": {"type": ["number", "null"]},
        "counts": {"type": "object", "required": list(STATES),
                   "additionalProperties": {"type": "integer"}},
        "exact": {"type": "boolean", "description": "false when some count is an estimate"},
        "groups": {"type": "object", "required": list(GROUPS), "additionalProperties": {"type": "integer"}}}},
    "Stats": {"type": "object", "required": ["taken_at", "queues", "groups", "throughput", "nodes"], "properties": {
        "taken_at": {"type": "string", "format": "date-time"}, "queues": {"type": "array", "items": _ref("Queue")},
        "groups": {"type": "object", "additionalProperties": {"type": "integer"}},
        "throughput": {"type": "array", "items": {"type": "object", "required": ["minute", "completed", "failed"]}},
        "nodes": {"type": "array", "items": {"type": "object", "required": ["name", "queues", "heartbeat_at"]}}}},
    "CronEntry": {"type": "object", "required": ["name", "schedule", "timezone", "enabled"], "properties": {
        "name": {"type": "string"}, "schedule": {"type": "string"}, "timezone": {"type": "string"},
        "enabled": {"type": "boolean"}, "next_run": NULLABLE_TIME, "next_run_local": NULLABLE_TIME,
        "last_slot": NULLABLE_TIME, "last_job_id": {"type": ["integer", "null"]},
        "last_job_state": {"type": ["string", "null"]}}},
}

LIST_PARAMS = [
    _query("state", {"enum": list(STATES)}, "Only jobs in this state"),
    _query("queue", TEXT, "Only this queue"), _query("kind", TEXT, "Only this kind"),
    _query("tag", TEXT, "Only jobs with this tag"),
    _query("q", {"type": "string", "maxLength": 500},
           'Search terms combined with AND (README, "Finding jobs"): id:123 kind:mail queue:default '
           'state:discarded,retryable tag:billing node:NAME definition:NAME args.to:a@example.com '
           'error:"timed out", and bare words (text in args). Error text, bare words, node: and '
           'definition: are checked on the newest 50,000 jobs matching the other terms. A malformed '
           'query is a 400 naming the term.'),
    _query("before", {"type": "integer", "minimum": 1}, "Cursor: jobs with a smaller id"),
    _query("after", {"type": "integer", "minimum": 1}, "Cursor: jobs with a larger id"),
    _query("order", {"enum": ["newest", "oldest"]}, "Sort by insertion time"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "Page size (default 50)"),
]


# One operation per action, each with its own operationId, so generated clients get
# retryJob(id) rather than jobAction(id, "retry").
JOB_SUMMARIES = {"retry": "Retry one job now (any state but executing)", "cancel": "Cancel one job",
                 "delete": "Delete one job that is not executing", "run": "Run one scheduled or waiting job now"}
QUEUE_SUMMARIES = {"pause": "Pause a queue on every node", "resume": "Resume a paused queue on every node",
                   "scale": "Set a queue's concurrency on every node"}
CRON_SUMMARIES = {"enable": "Enable a cron entry", "disable": "Disable a cron entry",
                  "run": "Run a cron entry's job now"}
assert set(JOB_SUMMARIES) == set(JOB_ACTIONS) and set(CRON_SUMMARIES) == set(CRON_ACTIONS)


def _paths() -> dict[str, Any]:
    return {
        "/api/jobs": {
            "get": {"operationId": "listJobs", "summary": "List jobs, filtered and paged by id",
                    "parameters": LIST_PARAMS,
                    "responses": {"200": _json(_ref("JobPage"), "A page of jobs"), **_errors(400)}},
            "post": {"operationId": "enqueueJob", "summary": "Enqueue a job document",
                     "parameters": [_query("kind", TEXT, "Kind, when the body is a bare payload document")],
                     "requestBody": _body(_ref("JobDocument")),
                     "responses": {"201": _json({"type": "object", "required": ["job"],
                                                 "properties": {"job": _ref("Job")}}, "The job"),
                                   **_errors(400, 403, 422)}}},
        "/api/jobs/bulk": {
            "post": {"operationId": "bulkJobs", "summary": "Retry, cancel, delete or run many jobs",
                     "requestBody": _body(_ref("BulkRequest")),
                     "responses": {"200": _json(_ref("BulkResult"), "What changed"), **_errors(400, 403)}}},
        "/api/jobs/{job_id}": {
            "get": {"operationId": "getJob", "summary": "One job with attempts, chain and timeline",
                    "parameters": [JOB_ID],
                    "responses": {"200": _json({"type": "object", "required": ["job"],
                                                "properties": {"job": _ref("JobDetail")}}, "The job"),
                                  **_errors(400, 404)}},
            "delete": {"operationId": "deleteJobById", "summary": "Delete a job that is not executing",
                       "parameters": [JOB_ID],
                       "responses": {"200": _json({"type": "object", "required": ["deleted"], "properties": {
                           "deleted": {"type": "integer"}}}, "The id deleted"), **_errors(400, 403, 404, 409)}}},
        **{f"/api/jobs/{{job_id}}/{action}": {
            "post": {"operationId": f"{action}Job", "summary": JOB_SUMMARIES[action], "parameters": [JOB_ID],
                     "responses": {"200": _json({"type": "object", "properties": {
                         "job": _ref("Job"), "deleted": {"type": "integer"}}}, "The job after the action"),
                         **_errors(400, 403, 404, 409)}}} for action in JOB_ACTIONS},
        "/api/queues": {
            "get": {"operationId": "listQueues", "summary": "Queues with counts per state and controls",
                    "responses": {"200": _json({"type": "object", "required": ["queues"], "properties": {
                        "queues": {"type": "array", "items": _ref("Queue")}}}, "Queues"), **_errors()}}},
        **{f"/api/queues/{{name}}/{action}": {
            "post": {"operationId": f"{action}Queue", "summary": QUEUE_SUMMARIES[action],
                     "parameters": [_path_param("name", TEXT, "Queue name")],
                     **({"requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["concurrency"], "properties": {"concurrency": {
                             "type": "integer", "minimum": 1, "maximum": 10000}}}}}}} if action == "scale" else {}),
                     "responses": {"200": _json({"type": "object", "required": ["queue"],
                                                 "properties": {"queue": {"type": "object"}}}, "The queue"),
                                   **_errors(400, 403, 404)}}} for action in QUEUE_SUMMARIES},
        "/api/stats": {
            "get": {"operationId": "stats", "summary": "Overview: queues, state groups, throughput, nodes",
                    "responses": {"200": _json(_ref("Stats"), "The overview"), **_errors()}}},
        "/api/cron": {
            "get": {"operationId": "listCron", "summary": "Cron entries with their next runs",
                    "responses": {"200": _json({"type": "object", "required": ["entries"], "properties": {
                        "entries": {"type": "array", "items": _ref("CronEntry")}}}, "Entries"), **_errors()}}},
        **{f"/api/cron/{{name}}/{action}": {
            "post": {"operationId": f"{action}Cron", "summary": CRON_SUMMARIES[action],
                     "parameters": [_path_param("name", TEXT, "Entry name")],
                     "responses": {"200": _json({"type": "object", "required": ["name", "action"], "properties": {
                         "name": {"type": "string"}, "action": {"const": action},
                         "job_id": {"type": "integer"}}}, "Done"), **_errors(400, 403, 404)}}}
           for action in CRON_ACTIONS},
        "/api/nodes": {
            "get": {"operationId": "nodes", "summary": "Live nodes with their queues; silent and departed nodes",
                    "responses": {"200": _json(NODES_SCHEMA, "The nodes"), **_errors()}}},
        "/api/charts": {
            "get": {"operationId": "charts", "summary": "History from the rollup: counts and percentiles per step",
                    "parameters": [_query("range", {"enum": ["1h", "24h", "7d"]}, "The span (default 1h)"),
                                   _query("queue", TEXT, "One queue"), _query("kind", TEXT, "One kind")],
                    "responses": {"200": _json(CHARTS_SCHEMA, "One value per step for each series"),
                                  **_errors(400)}}},
        "/api/openapi.json": {
            "get": {"operationId": "openapi", "summary": "This document",
                    "responses": {"200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI"),
                                  **_errors()}}},
        "/metrics": {
            "get": {"operationId": "metrics", "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {
                        "type": "string"}}}}, **_errors()}}},
        "/healthz": {
            "get": {"operationId": "healthz",
                    "summary": "Engine health: database reachable, tasks alive, heartbeats landing (no token needed)",
                    "security": [],
                    "responses": {"200": _json(HEALTH_SCHEMA, "Healthy"),
                                  "503": _json(HEALTH_SCHEMA, "Database unreachable or engine unhealthy")}}},
    }


_NODE_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"}, "host": {"type": ["string", "null"]}, "pid": {"type": ["integer", "null"]},
    "version": {"type": ["string", "null"]}, "started_at": {"type": ["string", "null"]},
    "heartbeat_at": {"type": ["string", "null"]}, "heartbeat_age_seconds": {"type": "number"},
    "running": {"type": "integer"}, "queues": {"type": "array"}}
_NODE: dict[str, Any] = {"type": "object", "required": ["name", "queues"], "properties": _NODE_PROPERTIES}
NODES_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["nodes", "silent", "departed", "rescue_after_seconds"],
    "properties": {"taken_at": {"type": "string"}, "rescue_after_seconds": {"type": "number"},
                   "nodes": {"type": "array", "items": _NODE}, "silent": {"type": "array", "items": _NODE},
                   "departed": {"type": "array", "items": {**_NODE, "properties": {
                       **_NODE_PROPERTIES, "reason": {"enum": ["stopped", "lost"]}, "rescued": {"type": "integer"},
                       "rescued_ids": {"type": "array", "items": {"type": "integer"}},
                       "departed_at": {"type": "string"}}}}}}
CHARTS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["range", "step_seconds", "series"],
    "properties": {"range": {"enum": ["1h", "24h", "7d"]}, "step_seconds": {"type": "integer"},
                   "since": {"type": "string"}, "rolled_until": {"type": ["string", "null"]},
                   "queues": {"type": "array", "items": {"type": "string"}},
                   "kinds": {"type": "array", "items": {"type": "string"}},
                   "series": {"type": "object", "required": ["t", "completed", "failed", "failure_rate"],
                              "additionalProperties": {"type": "array"}}}}

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["status", "database", "healthy"],
    "properties": {"status": {"enum": ["ok", "unavailable"]}, "database": {"type": "boolean"},
                   "healthy": {"type": "boolean"}, "listener": {"type": "string"},
                   "heartbeat_age": {"type": ["number", "null"]}, "pending_acks": {"type": "integer"}},
}


def openapi_document() -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    paths = {**_paths(), **definition_paths(), **alert_paths()}
    paths["/api/jobs/{job_id}"]["patch"] = job_patch_operation()
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobengine", "version": "1", "description": (
            "Operate jobengine over HTTP. Authenticate with `Authorization: Bearer <token>`: a "
            "user's API token (`jobengine users token NAME`; the user's role applies), dashboard.token "
            "(an operator) or dashboard.readonly_token (a viewer). State-changing "
            "requests are POSTs; from a browser session they also need the X-CSRF-Token header.")},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **definition_schemas(), **alert_schemas()},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
