"""The OpenAPI operations of definitions, kinds and job edits, merged into
``/api/openapi.json`` by :mod:`engine.web.openapi`. Request bodies are generated from the
pydantic models that validate them (``DefinitionBody``, ``JobPatch``), so the document
cannot drift from the checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engine.cron.definition_model import DefinitionBody
from engine.web.actions import MAX_PAGE
from engine.web.job_edit import JobPatch

REF = "#/components/schemas/{model}"
TIME = {"type": ["string", "null"], "format": "date-time"}
NAME = {"name": "name", "in": "path", "required": True, "description": "Definition name",
        "schema": {"type": "string", "maxLength": 200}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "description": "Job id",
          "schema": {"type": "integer", "minimum": 1}}
TEXTS = {401: "No or wrong credentials", 403: "Forbidden: read-only, cross-site or CSRF", 400: "Bad input",
         404: "Not found", 409: "The name exists, the definition comes from the config, it changed since "
         "it was read, or the job has started", 422: "Invalid: `errors` names each field"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("FieldErrors" if code == 422 else "Error"), TEXTS[code]) for code in (401, *codes)}


def _model(model: type[BaseModel], schemas: dict[str, Any]) -> None:
    schema = model.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def definition_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    _model(DefinitionBody, schemas)
    _model(JobPatch, schemas)
    schemas.update({
        "FieldErrors": {"type": "object", "required": ["error", "status", "errors"], "properties": {
            "error": {"type": "string"}, "status": {"type": "integer"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
                "field": {"type": "string", "description": "Path such as trigger.at or job.data.host"},
                "message": {"type": "string"}}}}}},
        "Definition": {"type": "object", "required": ["name", "enabled", "trigger", "job", "source", "runs"],
                       "properties": {
            "name": {"type": "string"}, "description": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}}, "enabled": {"type": "boolean"},
            "trigger": {"type": "object", "required": ["type"]}, "job": {"type": "object"},
            "source": {"enum": ["api", "config"]}, "nextRunAt": TIME,
            "lastRun": {"type": ["object", "null"], "properties": {
                "jobId": {"type": "integer"}, "state": {"type": "string"}, "at": TIME}},
            "runs": {"type": "object", "required": ["total", "completed", "failed"], "properties": {
                "total": {"type": "integer"}, "completed": {"type": "integer"}, "failed": {"type": "integer"},
                "cancelled": {"type": "integer"}}},
            "createdAt": TIME, "createdBy": {"type": ["string", "null"]}, "updatedAt": TIME,
            "updatedBy": {"type": ["string", "null"]}}},
        "Run": {"allOf": [_ref("Job"), {"type": "object", "required": ["duration", "errorLine"], "properties": {
            "duration": {"type": ["number", "null"], "description": "Seconds from start to finish"},
            "errorLine": {"type": ["string", "null"], "description": "First line of the last error"}}}]},
        "Kind": {"type": "object", "required": ["kind", "queue", "maxAttempts", "timeout", "description", "schema"],
                 "properties": {"kind": {"type": "string"}, "queue": {"type": "string"},
                                "maxAttempts": {"type": "integer"},
                                "timeout": {"type": ["integer", "null"], "description": "Milliseconds"},
                                "description": {"type": "string"},
                                "schema": {"type": "object", "description": "JSON Schema of the payload (data)"}}},
    })
    return schemas


ONE = {"type": "object", "required": ["definition"], "properties": {"definition": _ref("Definition")}}


def definition_paths() -> dict[str, Any]:
    body = {"required": True, "content": {"application/json": {"schema": _ref("DefinitionBody")}}}
    return {
        "/api/definitions": {
            "get": {"operationId": "listDefinitions", "summary": "Every definition, by name",
                    "responses": {"200": _json({"type": "object", "required": ["definitions"], "properties": {
                        "definitions": {"type": "array", "items": _ref("Definition")}}}, "Definitions"),
                        **_errors()}},
            "post": {"operationId": "createDefinition", "summary": "Save a new definition", "requestBody": body,
                     "responses": {"201": _json(ONE, "Saved"), **_errors(400, 403, 409, 422)}}},
        "/api/definitions/{name}": {
            "get": {"operationId": "getDefinition", "summary": "One definition", "parameters": [NAME],
                    "responses": {"200": _json(ONE, "The definition"), **_errors(404)}},
            "put": {"operationId": "replaceDefinition", "parameters": [NAME], "requestBody": body,
                    "summary": "Replace a definition whole (with updatedAt: 409 if it changed since)",
                    "responses": {"200": _json(ONE, "Saved"), **_errors(400, 403, 404, 409, 422)}},
            "delete": {"operationId": "deleteDefinition", "summary": "Delete a definition (its jobs stay)",
                       "parameters": [NAME],
                       "responses": {"200": _json({"type": "object", "required": ["deleted"], "properties": {
                           "deleted": {"type": "string"}}}, "Deleted"), **_errors(403, 404, 409)}}},
        "/api/definitions/{name}/run": {
            "post": {"operationId": "runDefinition", "summary": "Insert one run now (also when disabled)",
                     "parameters": [NAME],
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "additionalProperties": False,
                         "properties": {"vars": {"type": "object"}}}}}},
                     "responses": {"201": _json({"type": "object", "required": ["jobId", "job"], "properties": {
                         "jobId": {"type": "integer"}, "job": _ref("Job")}}, "The job"),
                         **_errors(400, 403, 404, 422)}}},
        **{f"/api/definitions/{{name}}/{action}": {
            "post": {"operationId": f"{action}Definition", "summary": f"{action.capitalize()} a definition",
                     "parameters": [NAME], "responses": {"200": _json(ONE, "The definition"),
                                                         **_errors(403, 404)}}}
           for action in ("enable", "disable")},
        "/api/definitions/{name}/runs": {
            "get": {"operationId": "listDefinitionRuns", "summary": "Its jobs, newest first, paged by id",
                    "parameters": [NAME, {"name": "before", "in": "query", "required": False,
                                          "schema": {"type": "integer", "minimum": 1}},
                                   {"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}}],
                    "responses": {"200": _json({"type": "object", "required": ["jobs", "next"], "properties": {
                        "jobs": {"type": "array", "items": _ref("Run")},
                        "next": {"type": ["object", "null"], "properties": {"before": {"type": "integer"}}}}},
                        "A page of runs"), **_errors(400, 404)}}},
        "/api/kinds": {
            "get": {"operationId": "listKinds", "summary": "Registered kinds with the JSON Schema of their payload",
                    "responses": {"200": _json({"type": "object", "required": ["kinds"], "properties": {
                        "kinds": {"type": "array", "items": _ref("Kind")}}}, "Kinds"), **_errors()}}},
    }


def job_patch_operation() -> dict[str, Any]:
    """``PATCH /api/jobs/{job_id}``, merged into that path's operations."""
    return {"operationId": "editJob", "summary": "Edit a job that has not started", "parameters": [JOB_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("JobPatch")}}},
            "responses": {"200": _json({"type": "object", "required": ["job"], "properties": {"job": _ref("Job")}},
                                       "The job after the edit"), **_errors(400, 403, 404, 409, 422)}}
