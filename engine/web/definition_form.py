"""The definition form: inputs generated from a kind's JSON Schema (typed inputs, required
fields marked, enums as selects, arrays and objects as JSON), and the way back from the
posted form to a definition body the API would accept.

Every string input takes ``{{placeholders}}``; so do number inputs of fields whose schema
allows a string. The raw JSON document is the alternative editor: when it is chosen, it
replaces the generated fields whole.

Example::

    fields = schema_fields(kind_schema, values={"host": "{{dbServer}}"})
    body, problems = body_from_form(form, kind_schema)   # problems: field -> message
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["FormField", "body_from_form", "body_to_form", "schema_fields"]

LONG_TEXT = ("command", "body", "text", "html", "message", "script")
JOB_OPTIONS = (("queue", "text"), ("priority", "integer"), ("attempts", "integer"), ("timeout", "integer"))


@dataclass(slots=True)
class FormField:
    """One generated input: ``name`` is posted as ``data.NAME``; ``widget`` is text,
    textarea, number, checkbox, select or json."""

    name: str
    label: str
    widget: str
    required: bool
    value: str = ""
    options: list[str] = field(default_factory=list)
    hint: str = ""


def _branches(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]


def _widget(name: str, schema: Mapping[str, Any]) -> tuple[str, list[str]]:
    branches = _branches(schema)
    for branch in branches:
        if "enum" in branch:
            return "select", [str(v) for v in branch["enum"]]
    types = {branch.get("type") for branch in branches}
    if types & {"object", "array"}:
        return "json", []
    if types <= {"boolean"} and types:
        return "checkbox", []
    if types and types <= {"integer", "number"}:
        return "number", []
    long = name in LONG_TEXT or any(int(b.get("maxLength", 0)) > 500 for b in branches)
    return ("textarea" if long else "text"), []


def _text(value: Any, widget: str) -> str:
    if value is None:
        return ""
    if widget == "json":
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else ""
    return str(value)


def schema_fields(schema: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> list[FormField]:
    """The inputs of a payload schema, in its order, filled from ``values`` (the saved data)."""
    values = values or {}
    required = set(schema.get("required", []))
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        widget, options = _widget(name, prop)
        hint = str(prop.get("description") or "")
        if "default" in prop and prop["default"] not in (None, "", [], {}):
            hint = (hint + " " if hint else "") + f"default {json.dumps(prop['default'])}"
        fields.append(FormField(name, str(prop.get("title") or name), widget, name in required,
                                _text(values.get(name), widget), options, hint))
    return fields


def _number(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw  # a {{placeholder}} or a typo: the kind's model names it


def _data(form: Mapping[str, str], schema: Mapping[str, Any], problems: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in schema_fields(schema):
        raw = form.get(f"data.{item.name}", "")
        if item.widget == "checkbox":
            if raw:
                data[item.name] = True
            continue
        if raw == "":
            continue
        if item.widget == "number":
            data[item.name] = _number(raw.strip())
        elif item.widget == "json":
            try:
                data[item.name] = json.loads(raw)
            except ValueError as exc:
                problems[f"job.data.{item.name}"] = f"not valid JSON: {exc}"
        else:
            data[item.name] = raw
    if not schema.get("properties"):  # a kind without a model: its payload is one JSON object
        raw = form.get("data", "").strip() or "{}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            problems["job.data"] = f"not valid JSON: {exc}"
    return data


def _trigger(form: Mapping[str, str], problems: dict[str, str]) -> dict[str, Any]:
    kind = form.get("trigger.type", "manual")
    zone = form.get("trigger.timezone", "").strip() or "UTC"
    if kind == "cron":
        trigger: dict[str, Any] = {"type": "cron", "schedule": form.get("trigger.schedule", "").strip(),
                                   "timezone": zone, "overlap": form.get("trigger.overlap", "allow")}
        catch_up = form.get("trigger.catchUp", "").strip()
        if catch_up:
            trigger["catchUp"] = _number(catch_up)
        return trigger
    if kind == "once":
        raw = form.get("trigger.at", "").strip()
        try:
            at = datetime.fromisoformat(raw)
            if at.tzinfo is None:
                at = at.replace(tzinfo=ZoneInfo(zone))
        except (ValueError, ZoneInfoNotFoundError):
            problems["trigger.at"] = f"{raw!r} is not a date and time (e.g. 2026-12-24T02:00)"
            return {"type": "once", "at": raw}
        return {"type": "once", "at": at.isoformat()}
    return {"type": kind}


def body_from_form(form: Mapping[str, str], schema: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The definition body a posted form describes, and the problems found before the
    definitions' own validation (JSON that does not parse), by field path."""
    problems: dict[str, str] = {}
    if form.get("editor") == "raw":
        try:
            job = json.loads(form.get("raw_job", ""))
        except ValueError as exc:
            problems["raw_job"] = f"not valid JSON: {exc}"
            job = {}
    else:
        job = {"jobType": form.get("kind", ""), "data": _data(form, schema or {}, problems)}
        for name, kind in JOB_OPTIONS:
            raw = form.get(f"job.{name}", "").strip()
            if raw:
                job[name] = _number(raw) if kind == "integer" else raw
    tags = [tag.strip() for tag in form.get("tags", "").split(",") if tag.strip()]
    body = {"name": form.get("name", "").strip(), "description": form.get("description", ""), "tags": tags,
            "enabled": bool(form.get("enabled")), "trigger": _trigger(form, problems), "job": job}
    if form.get("updatedAt"):
        body["updatedAt"] = form["updatedAt"]
    return body, problems


def body_to_form(definition: Mapping[str, Any]) -> dict[str, str]:
    """A saved definition (as the API shows it) as the form's values, for editing."""
    trigger, job = definition["trigger"], definition["job"]
    values = {"name": definition["name"], "description": definition.get("description", ""),
              "tags": ", ".join(definition.get("tags", [])), "enabled": "on" if definition.get("enabled") else "",
              "kind": str(job.get("jobType", "")), "trigger.type": trigger["type"],
              "raw_job": json.dumps(job, indent=2, ensure_ascii=False), "updatedAt": definition.get("updatedAt") or ""}
    for key in ("schedule", "timezone", "overlap", "catchUp"):
        if key in trigger:
            values[f"trigger.{key}"] = str(trigger[key])
    if trigger["type"] == "once":
        values["trigger.at"] = trigger["at"]
    for name, _ in JOB_OPTIONS:
        if name in job:
            values[f"job.{name}"] = str(job[name])
    data = job.get("data") or {}
    values["data"] = json.dumps(data, ensure_ascii=False)
    if isinstance(data, dict):
        for key, value in data.items():
            values[f"data.{key}"] = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) \
                else ("on" if value is True else str(value))
    return values
