"""The OpenAPI operation of ``GET /api/alerts`` and its schemas, merged into
``/api/openapi.json`` by :mod:`engine.web.openapi`. The schemas are generated from the
pydantic models below, which describe what :func:`engine.web.alerts.alerts_document` returns
(tests/web/test_api.py validates a real answer against them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from engine.core.config import AlertMetric

REF = "#/components/schemas/{model}"


class AlertTransition(BaseModel):
    """One fired or recovered step of an alert."""

    event: Literal["fired", "recovered"]
    at: str | None = Field(description="When (ISO 8601, UTC)")
    value: float | None = Field(description="The metric's value then")
    value_text: str
    threshold: float | None
    threshold_text: str
    detail: dict[str, Any] = Field(description="What the value was made of: queues, nodes or definitions")


class Alert(BaseModel):
    """A configured alert with its state."""

    name: str
    metric: AlertMetric
    queue: str | None
    definition: str | None
    threshold: float = Field(description="The alert fires while the value is above this")
    threshold_text: str
    for_seconds: float = Field(description="How long the value must stay above the threshold before it fires")
    notify: list[Literal["email", "webhook"]] = Field(description="Where transitions are sent (never the "
                                                                  "address or URL itself)")
    state: Literal["ok", "pending", "firing"]
    since: str | None = Field(description="When it entered its state; null before its first evaluation")
    value: float | None = Field(description="The value at the last evaluation")
    value_text: str
    detail: dict[str, Any]
    evaluated_at: str | None
    history: list[AlertTransition] = Field(description="The last transitions, newest first")


class AlertList(BaseModel):
    """``GET /api/alerts``."""

    taken_at: str
    interval_seconds: float = Field(description="How often one node evaluates every alert")
    alerts: list[Alert]


def alert_schemas() -> dict[str, Any]:
    schema = AlertList.model_json_schema(ref_template=REF)
    return {**schema.pop("$defs", {}), "AlertList": schema}


def alert_paths() -> dict[str, Any]:
    error = {"description": "No or wrong credentials",
             "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    return {"/api/alerts": {"get": {
        "operationId": "listAlerts", "summary": "Every configured alert with its state, value and recent history",
        "responses": {"200": {"description": "The alerts", "content": {"application/json": {
            "schema": {"$ref": REF.format(model="AlertList")}}}}, "401": error}}}}
