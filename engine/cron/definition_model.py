"""Definitions as the API reads and writes them (README, "Managing jobs from the dashboard"): the body's validation,
with every problem named by its field path (``trigger.at``, ``job.data.host``), the row it
is stored as, its next runs, and its JSON form.

Example::

    body = parse_body({"name": "nightly", "trigger": {"type": "cron", "schedule": "0 2 * * *"},
                       "job": {"jobType": "log", "data": {"message": "hi"}}}, now=now)
    row = body.row()                      # for DefinitionRows.definition_insert
    definition_json(stored_row, now)      # {"name": "nightly", ..., "nextRunAt": "..."}
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.cron.schedule import CronConfigError, CronSchedule

__all__ = [
    "NAME_PATTERN", "DefinitionBody", "DefinitionInvalid", "FieldError", "definition_json", "next_runs",
    "parse_body",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
TRIGGER_TYPES = ("manual", "cron", "once")
RESERVED_NAMES = frozenset({"new", "preview"})  # /definitions/new and /definitions/preview
# What GET returns beside the body; accepted (and ignored) in a PUT so a read can be sent back.
READ_ONLY_FIELDS = frozenset({"source", "nextRunAt", "nextRuns", "lastRun", "runs", "createdAt", "createdBy",
                              "updatedBy", "error"})
MAX_CATCH_UP = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with a definition: the field path and what is wrong with it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class DefinitionInvalid(ValueError):
    """A definition was refused; ``errors`` name each field (nothing was saved)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))

    @classmethod
    def from_mapping(cls, problems: dict[str, str]) -> DefinitionInvalid:
        return cls([FieldError(field, message) for field, message in problems.items()])

    @classmethod
    def single(cls, field: str, message: str) -> DefinitionInvalid:
        return cls([FieldError(field, message)])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManualTrigger(_Strict):
    type: Literal["manual"]


class CronTrigger(_Strict):
    type: Literal["cron"]
    schedule: str = Field(min_length=1, max_length=200)
    timezone: str = Field("UTC", min_length=1, max_length=100)
    overlap: Literal["allow", "skip"] = "allow"
    catchUp: float = Field(0.0, ge=0, le=MAX_CATCH_UP)  # seconds


class OnceTrigger(_Strict):
    type: Literal["once"]
    at: AwareDatetime


Trigger = Annotated[ManualTrigger | CronTrigger | OnceTrigger, Field(discriminator="type")]
Tag = Annotated[str, Field(pattern=TAG_PATTERN.pattern)]


class DefinitionBody(_Strict):
    """A definition as POSTed or PUT (camelCase)."""

    name: str
    description: str = Field("", max_length=2000)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    enabled: bool = True
    trigger: Trigger = Field(default_factory=lambda: ManualTrigger(type="manual"))
    job: dict[str, Any]
    updatedAt: AwareDatetime | None = None  # PUT: refuse (409) if changed since

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("use 1-63 lower-case letters, digits and . _ - (starting with a letter or digit)")
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved (a dashboard path); choose another name")
        return value

    def row(self) -> dict[str, Any]:
        """The columns DefinitionRows writes."""
        trigger = self.trigger
        cron = trigger if isinstance(trigger, CronTrigger) else None
        return {
            "name": self.name, "description": self.description, "tags": list(self.tags), "enabled": self.enabled,
            "trigger_type": trigger.type, "schedule": cron.schedule if cron else None,
            "timezone": cron.timezone if cron else "UTC", "overlap": cron.overlap if cron else "allow",
            "catch_up": cron.catchUp if cron else 0.0,
            "once_at": trigger.at.astimezone(UTC) if isinstance(trigger, OnceTrigger) else None,
            "job": self.job,
        }


def parse_body(body: Any, *, now: datetime, name: str | None = None,
               saved_at: datetime | None = None) -> DefinitionBody:
    """Validate a definition body (``name`` from the URL for a PUT, which the body may
    repeat); raise :class:`DefinitionInvalid` naming every bad field. The job document is
    checked by the caller, which knows the registered kinds. ``saved_at``: the stored once
    instant of the definition being replaced, which may stay although it has passed (so a
    fired once definition can still have its description edited)."""
    if not isinstance(body, dict):
        raise DefinitionInvalid([FieldError("body", "must be a JSON object")])
    body = {key: value for key, value in body.items() if key not in READ_ONLY_FIELDS}
    if name is not None and body.setdefault("name", name) != name:
        raise DefinitionInvalid([FieldError("name", f"is {name!r} in the URL; a definition cannot be renamed")])
    try:
        parsed = DefinitionBody.model_validate(body)
    except ValidationError as exc:
        raise DefinitionInvalid([_field_error(e) for e in exc.errors()]) from None
    unchanged = isinstance(parsed.trigger, OnceTrigger) and saved_at is not None and parsed.trigger.at == saved_at
    problems = [] if unchanged else trigger_errors(parsed.trigger, now)
    if problems:
        raise DefinitionInvalid(problems)
    return parsed


def trigger_errors(trigger: ManualTrigger | CronTrigger | OnceTrigger, now: datetime) -> list[FieldError]:
    """A cron trigger's zone and expression, a once trigger's instant (not in the past)."""
    if isinstance(trigger, OnceTrigger):
        if trigger.at <= now:
            return [FieldError("trigger.at", f"{trigger.at.isoformat()} is in the past (now is "
                               f"{now.isoformat(timespec='seconds')}); a once trigger must be in the future")]
        return []
    if isinstance(trigger, CronTrigger):
        try:
            ZoneInfo(trigger.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return [FieldError("trigger.timezone", f"unknown timezone {trigger.timezone!r} (use an IANA name "
                               "such as Europe/Berlin or UTC)")]
        try:
            CronSchedule.parse(trigger.schedule, trigger.timezone)
        except CronConfigError as exc:
            return [FieldError("trigger.schedule", str(exc).removeprefix("cron schedule: "))]
    return []


def _field_error(error: Any) -> FieldError:
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[0] == "trigger" and loc[1] in TRIGGER_TYPES:
        del loc[1]  # the discriminator's branch is not a field the user wrote
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "union_tag_invalid":
        message = f"type must be one of {', '.join(TRIGGER_TYPES)}"
    return FieldError(path or "body", message)


def trigger_json(row: dict[str, Any]) -> dict[str, Any]:
    kind = row["trigger_type"]
    if kind == "cron":
        return {"type": "cron", "schedule": row["schedule"], "timezone": row["timezone"],
                "overlap": row["overlap"], "catchUp": row["catch_up"]}
    if kind == "once":
        return {"type": "once", "at": row["once_at"].isoformat()}
    return {"type": "manual"}


@functools.lru_cache(maxsize=4096)
def parsed_schedule(expression: str, timezone: str) -> CronSchedule:
    """CronSchedule.parse, remembered: parsing checks the expression by iterating it, about
    a millisecond, and the definitions page needs the schedule of every definition."""
    return CronSchedule.parse(expression, timezone)


# (schedule, zone) -> (from, next): `next` is the first slot after any instant in [from, next),
# so a page listing 1,000 definitions computes each one's next run once per slot, not per view.
_NEXT_SLOTS: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def _next_slot(schedule: CronSchedule, after: datetime) -> datetime:
    key = (schedule.expr, schedule.timezone)
    known = _NEXT_SLOTS.get(key)
    if known is not None and known[0] <= after < known[1]:
        return known[1]
    slot = schedule.next_slot(after)
    if len(_NEXT_SLOTS) > 10_000:
        _NEXT_SLOTS.clear()
    _NEXT_SLOTS[key] = (after, slot)
    return slot


def next_runs(row: dict[str, Any], now: datetime, count: int = 1) -> list[datetime]:
    """The next ``count`` instants the definition fires (UTC); none for manual, disabled,
    fired once definitions, or a schedule this host cannot read."""
    if not row["enabled"]:
        return []
    if row["trigger_type"] == "once":
        at = row["once_at"]
        fired = row["last_slot"] is not None and row["last_slot"] >= at
        return [at] if not fired and row["active_since"] < at else []
    if row["trigger_type"] != "cron":
        return []
    try:
        schedule = parsed_schedule(row["schedule"], row["timezone"])
    except CronConfigError:
        return []
    after = max(now, row.get("last_slot") or now)
    if count == 1:
        return [_next_slot(schedule, after)]
    slots: list[datetime] = []
    for slot in schedule.iter_slots(after):
        slots.append(slot)
        if len(slots) >= count:
            break
    return slots


def _document_order(job: Any) -> Any:
    """jsonb keeps keys in its own order; show jobType and data first, as people write them."""
    if not isinstance(job, dict):
        return job
    return {**{key: job[key] for key in ("jobType", "data") if key in job}, **job}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def definition_json(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A stored definition as the API returns it (README, "Managing jobs from the dashboard")."""
    upcoming = next_runs(row, now)
    last = None
    if row["last_run_job_id"] is not None:
        last = {"jobId": row["last_run_job_id"], "state": row["last_run_state"] or "pruned",
                "at": _iso(row["last_run_at"])}
    return {
        "name": row["name"], "description": row["description"], "tags": list(row["tags"]),
        "enabled": row["enabled"], "trigger": trigger_json(row), "job": _document_order(row["job"]),
        "source": "api" if row["source"] == "runtime" else row["source"],
        "nextRunAt": _iso(upcoming[0]) if upcoming else None, "lastRun": last,
        "runs": {"total": row["runs_total"], "completed": row["runs_completed"], "failed": row["runs_failed"],
                 "cancelled": row["runs_cancelled"]},
        "createdAt": _iso(row["created_at"]), "createdBy": row["created_by"],
        "updatedAt": _iso(row["updated_at"]), "updatedBy": row["updated_by"],
    }
