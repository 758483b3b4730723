"""The OpenAPI document: valid OpenAPI 3.1, one operation per action, generated from the models
that name exactly the fields the code builds, and open to per-feature modules; answers checked
against those models."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import structlog.testing
from openapi_spec_validator import validate

from engine.core.job import Job
from engine.core.secrets import Secrets
from engine.cron.store import CronStatus
from engine.web import api_models
from engine.web.actions import CRON_ACTIONS, JOB_ACTIONS, JobFilter
from engine.web.api import answer
from engine.web.api_models import Feature, Operation
from engine.web.openapi import FEATURES, OPERATIONS, build_document, openapi_document
from engine.web.present import job_detail, job_summary
from engine.web.snapshot import Count, QueueView


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises, naming the offending part


def test_each_action_is_its_own_operation() -> None:
    paths = openapi_document()["paths"]
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    assert not [path for path in paths if "{action}" in path]
    for action in JOB_ACTIONS:
        assert paths[f"/api/jobs/{{job_id}}/{action}"]["post"]["operationId"] == f"{action}Job"
    for action in ("pause", "resume", "scale"):
        assert paths[f"/api/queues/{{name}}/{action}"]["post"]["operationId"] == f"{action}Queue"
    for action in CRON_ACTIONS:
        assert paths[f"/api/cron/{{name}}/{action}"]["post"]["operationId"] == f"{action}Cron"
    assert "requestBody" in paths["/api/queues/{name}/scale"]["post"]
    assert "requestBody" not in paths["/api/queues/{name}/pause"]["post"]


def test_every_parameter_and_error_is_described() -> None:
    for path, ops in openapi_document()["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                assert param["description"], (method, path, param["name"])
                assert "null" not in str(param["schema"].get("type")), "an absent parameter is absent, not null"
            for status, response in op["responses"].items():
                schema = response["content"].get("application/json", {}).get("schema", {})
                if status.startswith(("4", "5")) and path != "/healthz":
                    assert schema["$ref"].endswith(("/Error", "/FieldErrors")), (method, path, status)


def test_request_bodies_are_validation_schemas_and_answers_serialization_ones() -> None:
    schemas = build_document(OPERATIONS, [feature for feature in FEATURES if feature.operations])[
        "components"]["schemas"]  # the table's (a module's written schemas are its own)
    assert schemas["BulkRequest"]["additionalProperties"] is False  # extra="forbid": refused input says so
    assert "jobType" in schemas["JobDocument"]["properties"], "documents use their aliases"
    assert schemas["Kind"]["properties"]["schema"], "answers use their aliases too"
    assert "Unique" in schemas, "private models lose their underscore"
    assert not [name for name, schema in schemas.items()
                for prop in schema.get("properties", {}).values() if "title" in prop]


def _job() -> Job:
    return Job(id=7, queue="mail", kind="mail", args={"to": "a@example.com"}, errors=[
        {"attempt": 1, "at": "2026-01-01T00:00:00+00:00", "kind": "error", "error": "boom"}])


def test_the_models_name_the_fields_the_code_builds() -> None:
    secrets = Secrets({})
    assert set(job_summary(_job(), secrets)) == set(api_models.Job.model_fields)
    detail = {**job_detail(_job(), {}, [], secrets), "attempt_logs": []}  # api.get_job adds the logs
    assert set(detail) == set(api_models.JobDetail.model_fields)
    api_models.JobDetailAnswer.model_validate({"job": detail})
    queue = QueueView("mail", {state: Count(0) for state in api_models.StateCounts.model_fields}, paused=False,
                      concurrency=None, configured=True, nodes=1, oldest_wait=None)
    assert set(queue.as_dict()) == set(api_models.Queue.model_fields)
    assert {f.name for f in dataclasses.fields(CronStatus)} == set(api_models.CronEntry.model_fields)
    assert {f.name for f in dataclasses.fields(JobFilter)} == set(api_models.JobListQuery.model_fields)
    assert set(api_models.BulkFilter.model_fields) < set(api_models.JobListQuery.model_fields)
    assert api_models.BulkFilter.model_config.get("extra") == "forbid", "a bulk filter refuses other keys"


def test_a_feature_module_contributes_rows_or_written_paths() -> None:
    row = Operation("get", "/api/widgets", "listWidgets", "Widgets", answers={200: (api_models.QueueList, "Them")})
    written: dict[str, Any] = {"/api/alerts": {"get": {"operationId": "listAlerts", "summary": "Alerts",
                                                        "responses": {"200": {"description": "Alerts"}}}}}
    doc = build_document(OPERATIONS, [*FEATURES, Feature(operations=[row]),
                                      Feature(paths=lambda: written, schemas=lambda: {"Alert": {"type": "object"}})])
    assert doc["paths"]["/api/widgets"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QueueList"}
    assert doc["paths"]["/api/alerts"]["get"]["operationId"] == "listAlerts"
    assert doc["components"]["schemas"]["Alert"] == {"type": "object"}
    assert set(openapi_document()["paths"]) < set(doc["paths"])
    validate(doc)


def test_an_answer_that_drifted_from_its_model_is_logged_and_still_sent() -> None:
    with structlog.testing.capture_logs() as logs:
        response = answer(api_models.Deleted, {"deleted": "seven", "secret": "never-logged"})
    assert response.status == 200 and json.loads(response.text) == {"deleted": "seven", "secret": "never-logged"}
    assert [entry["event"] for entry in logs] == ["answer does not match its documented model"]
    assert logs[0]["model"] == "Deleted" and "deleted" in logs[0]["problems"][0]
    assert "seven" not in str(logs) and "never-logged" not in str(logs), "values stay out of the logs"
    with structlog.testing.capture_logs() as logs:
        answer(api_models.Deleted, {"deleted": 7})
    assert logs == []
