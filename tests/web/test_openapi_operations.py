"""The OpenAPI document has one operation per action, each with its own operationId."""

from __future__ import annotations

from engine.web.actions import CRON_ACTIONS, JOB_ACTIONS
from engine.web.openapi import openapi_document


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
