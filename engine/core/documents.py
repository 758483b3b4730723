"""Job documents: the camelCase JSON format described in docs/job-documents.md.

A whole document carries its kind as ``jobType``; a bare payload is the ``data`` of a
document whose kind is given beside it (``jobengine enqueue mail --file payload.json``).
Times in documents are milliseconds (``delay``, ``timeout``, ``backoff.delay``);
``JobSpec`` holds seconds, except ``backoff`` which keeps the document's dict.

The options' document names and units are declared on JobSpec (engine.core.options);
:class:`_Document` adds their validation and is checked against them at import. Parsing
and serialising go through that table, in the document's field order.

Example::

    doc = loads_document_text('{"jobType": "log", "delay": 5000 // five seconds\\n}')
    spec = parse_document(doc)           # JobSpec(kind='log', args={}, delay=5.0, ...)
    spec_to_document(spec)               # {'jobType': 'log', 'delay': 5000}
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.core.conditions import ConditionSyntaxError, parse_condition
from engine.core.job import JOB_OPTIONS, JobSpec, JobState, UniqueSpec
from engine.core.options import JobOption
from engine.core.registry import KIND_PATTERN

__all__ = [
    "DOCUMENT_KEYS", "DocumentError", "classify_payload", "is_document", "loads_document_text",
    "parse_document", "spec_to_document",
]

MAX_CHAIN_DEPTH = 16  # onSuccess inside onSuccess ...: a runaway document is refused


def _name(value: str) -> str:
    if not KIND_PATTERN.match(value):
        raise ValueError("use 1-128 letters, digits and _ . : - (starting with a letter or digit)")
    return value


_Name = Annotated[str, AfterValidator(_name)]
_Ms = Annotated[float, Field(strict=True, ge=0, le=10 * 365 * 86_400_000)]
_Int = Annotated[int, Field(strict=True)]
_Text = Annotated[str, Field(min_length=1, max_length=200)]


class DocumentError(ValueError):
    """A job document is malformed; the message names the field path (``data.to``, ``delay``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Unique(_Strict):
    keys: list[_Text] = []
    key: _Text | None = None
    # seconds; bounded so Postgres can hold it as an interval (1e-300 or 1e300 it cannot)
    period: Annotated[float, Field(strict=True, ge=0.001, le=10 * 365 * 86_400)] | None = None
    states: list[JobState] | None = None


class _Backoff(_Strict):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: _Ms | None = None


class _FailureNotification(_Strict):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None
    webhook: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2000)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _FailureNotification:
        if self.email is None and self.webhook is None:
            raise ValueError("give an email, a webhook or both")
        return self


class _Document(_Strict):
    """A whole job document: ``jobType``, ``data`` and one field per job option (named by
    its alias, or its attribute when it has none), in the order errors are reported."""

    job_type: _Name | None = Field(None, alias="jobType")
    data: dict[str, Any] = {}
    queue: _Name | None = None
    priority: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000)] | None = None
    delay: _Ms | None = None
    scheduled_at: datetime | None = Field(None, alias="scheduledAt")
    attempts: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    timeout: Annotated[float, Field(strict=True, gt=0)] | None = None
    tags: list[_Text] = []
    vars: dict[str, Any] = {}
    unique: _Unique | None = None
    on_success: dict[str, Any] | None = Field(None, alias="onSuccess")
    on_failure: dict[str, Any] | None = Field(None, alias="onFailure")
    condition: Annotated[str, Field(min_length=1)] | None = None
    failure_notification: _FailureNotification | None = Field(None, alias="failureNotification")
    backoff: _Backoff | None = None
    depends_on: list[Annotated[int, Field(strict=True, ge=1)]] = Field([], alias="dependsOn")

    @field_validator("unique", mode="before")
    @classmethod
    def _unique_flag(cls, value: Any) -> Any:
        # "unique": true means "unique by kind and all args, while waiting or running".
        return {} if value is True else None if value is False else value

    @field_validator("scheduled_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO-8601 date-time string, e.g. 2024-01-15T02:00:00Z")
        return value

    @field_validator("scheduled_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A time without an offset is read as UTC rather than the server's local zone.
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            value.astimezone(UTC)  # 9999-12-31T23:00-12:00 is past the last date Python can hold
        except OverflowError:
            raise ValueError("out of range: give a time from year 1 to 9999 in UTC") from None
        return value

    @model_validator(mode="after")
    def _one_start(self) -> _Document:
        if self.delay is not None and self.scheduled_at is not None:
            raise ValueError("give delay or scheduledAt, not both")
        return self


# Document key -> _Document attribute, in the model's field order.
_ATTRIBUTE = {field.alias or name: name for name, field in _Document.model_fields.items()}
DOCUMENT_KEYS = frozenset(_ATTRIBUTE)
if set(_ATTRIBUTE) != {"jobType", "data", *JOB_OPTIONS.by_document}:
    raise TypeError(f"documents._Document's fields {sorted(DOCUMENT_KEYS)} are not jobType, data and "
                    f"the job options {sorted(JOB_OPTIONS.by_document)} (engine.core.job.JobSpec)")
# The job options in the document's field order: the order of spec_to_document's keys.
_OPTIONS = tuple(JOB_OPTIONS.by_document[key] for key in _ATTRIBUTE if key in JOB_OPTIONS.by_document)


# --- text ---

# Strings first, so "//" inside a string (a URL) is kept; comments become blanks.
_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def loads_document_text(text: str) -> Any:
    """Parse JSON that may carry ``//`` and ``/* */`` comments (see docs/job-documents.md).
    Duplicate keys and NaN/Infinity are refused.

    Example::

        loads_document_text('{"priority": 10,  // high\\n "attempts": 3}')   # {'priority': 10, 'attempts': 3}
    """

    def blank(match: re.Match[str]) -> str:
        token = match.group()
        return token if token.startswith('"') else re.sub(r"[^\n]", " ", token)

    stripped = _COMMENT_OR_STRING.sub(blank, text)
    try:
        return json.loads(stripped, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DocumentError(f"{key}: given twice in the same object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise DocumentError(f"{name} is not a JSON number")


# --- documents ---


def is_document(obj: Any) -> bool:
    """The CLI rule: an object is a whole document when it has ``jobType``, or when every
    key is a document field (like ``{"priority": 10, "delay": 5000, "attempts": 3}``);
    otherwise it is a bare payload. A mail payload has a ``data`` of its own, so ``data``
    alone does not make a document."""
    return isinstance(obj, Mapping) and bool(obj) and ("jobType" in obj or set(obj) <= DOCUMENT_KEYS)


def classify_payload(obj: Any, kind: str | None = None) -> JobSpec:
    """A whole document, or a bare payload taken as the ``data`` of a ``kind`` job.

    Example::

        classify_payload({"level": "info", "message": "hi"}, "log").args   # {'level': 'info', ...}
        classify_payload({"priority": 10, "delay": 5000}, "log").delay      # 5.0
    """
    if is_document(obj):
        return parse_document(obj, kind=kind)
    if not isinstance(obj, Mapping):
        raise DocumentError(f"a job payload must be a JSON object, not {_json_type(obj)}")
    if kind is None:
        raise DocumentError("jobType: required (the object is a bare payload and no kind was given)")
    return parse_document({"jobType": kind, "data": dict(obj)})


def parse_document(doc: Mapping[str, Any], *, kind: str | None = None) -> JobSpec:
    """Validate a camelCase job document into a :class:`JobSpec`; ``kind`` is used when
    the document has no ``jobType``. Raises :class:`DocumentError` naming the field.

    Example::

        parse_document({"jobType": "maintenance-task", "condition": "{{serverLoad}} < 50"})
    """
    return _parse(doc, kind, "", 0)


def _parse(doc: Any, kind: str | None, where: str, depth: int) -> JobSpec:
    if not isinstance(doc, Mapping):
        raise DocumentError(f"{where or 'document'}: must be a JSON object, not {_json_type(doc)}")
    if depth > MAX_CHAIN_DEPTH:
        raise DocumentError(f"{where}: chained more than {MAX_CHAIN_DEPTH} documents deep")
    _check_no_nul(doc, where)
    try:
        model = _Document.model_validate(doc)
    except ValidationError as exc:
        raise DocumentError(_describe(exc, where)) from None
    job_type = model.job_type or kind
    if job_type is None:
        raise DocumentError(f"{_at(where, 'jobType')}: required")
    if kind is not None and model.job_type is not None and kind != model.job_type:
        raise DocumentError(f"{_at(where, 'jobType')}: {model.job_type!r} is not the kind given, {kind!r}")
    if model.condition is not None:
        try:
            parse_condition(model.condition)
        except ConditionSyntaxError as exc:
            raise DocumentError(f"{_at(where, 'condition')}: {exc}") from None
    for alias, nested in (("onSuccess", model.on_success), ("onFailure", model.on_failure)):
        if nested is not None:
            _parse(nested, None, _at(where, alias), depth + 1)
    return _to_spec(model, job_type)


def _to_spec(model: _Document, kind: str) -> JobSpec:
    options: dict[str, Any] = {}
    for option in _OPTIONS:
        value = getattr(model, _ATTRIBUTE[option.document])
        if value is not None:
            options[option.name] = _from_document(option, value)
    return JobSpec(kind=kind, args=dict(model.data), **options)


def _from_document(option: JobOption, value: Any) -> Any:
    if isinstance(value, _Unique):
        return _unique_spec(value)
    if isinstance(value, BaseModel):  # backoff, failureNotification: JobSpec keeps the dict
        return value.model_dump(exclude_none=True)
    if option.ms:
        return value / 1000
    return option.coerce(value)


def _unique_spec(unique: _Unique) -> UniqueSpec:
    default = UniqueSpec()
    states = default.states if unique.states is None else tuple(state.value for state in unique.states)
    return UniqueSpec(keys=tuple(unique.keys), key=unique.key, period=unique.period, states=states)


def spec_to_document(spec: JobSpec) -> dict[str, Any]:
    """The camelCase document for ``spec`` (the inverse of :func:`parse_document`), leaving
    out fields that are unset.

    Example::

        spec_to_document(JobSpec(kind="log", args={"message": "hi"}, timeout=2.5))
        # {'jobType': 'log', 'data': {'message': 'hi'}, 'timeout': 2500}
    """
    doc: dict[str, Any] = {"jobType": spec.kind}
    if spec.args:
        doc["data"] = spec.args
    for option in _OPTIONS:
        value = getattr(spec, option.name)
        if option.is_set(value):
            doc[option.document] = _to_document(option, value)
    return doc


def _to_document(option: JobOption, value: Any) -> Any:
    if isinstance(value, UniqueSpec):
        unique = {"keys": list(value.keys), "key": value.key, "period": value.period,
                  "states": [str(state) for state in value.states]}
        return {name: item for name, item in unique.items() if item not in (None, [])}
    if isinstance(value, datetime):
        return value.isoformat()
    if option.ms:
        return _ms(value)
    return list(value) if isinstance(value, tuple | list) else value


def _ms(seconds: float) -> int | float:
    ms = round(seconds * 1000, 3)
    return int(ms) if float(ms).is_integer() else ms


# --- errors ---


def _check_no_nul(value: Any, where: str) -> None:
    """Postgres jsonb cannot store U+0000, so refuse it here, naming where it is."""
    if isinstance(value, str):
        if "\x00" in value:
            raise DocumentError(f"{where or 'document'}: contains a NUL character (\\u0000), not storable")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            path = _at(where, str(key))
            if "\x00" in str(key):
                raise DocumentError(f"{where or 'document'}: a key contains a NUL character (\\u0000)")
            _check_no_nul(item, path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_nul(item, f"{where}[{index}]")


def _describe(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        path = where
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else _at(path, str(part))
        problems.append(f"{path or 'document'}: {_message(error)}")
    return "; ".join(problems)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        name, top_level = str(error["loc"][-1]), len(error["loc"]) == 1
        guess = difflib.get_close_matches(name, sorted(DOCUMENT_KEYS), n=1) if top_level else []
        return "unknown field" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    return str(error["msg"]).removeprefix("Value error, ")


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "an array", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
