"""Turn insert requests (JobSpec) into rows: defaults from the handler, validation,
and refusal of anything that must never reach the table."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from pydantic import ValidationError

from engine.core import tracing
from engine.core.config import path_segment_problem
from engine.core.errors import EnqueueError
from engine.core.job import JOB_OPTIONS, JobSpec
from engine.core.registry import Registry
from engine.core.secrets import Secrets, SecretScopeError
from engine.core.templating import placeholders_in
from engine.db.rows import InsertRow
from engine.insert.flow import check_flow
from engine.insert.unique import ALL_STATES, parse_unique, unique_key

MAX_ARGS_BYTES = 1_000_000


# (JobSpec field, meta key) of the job options stored in meta when not None: on_success, condition...
_OPTIONAL_META = JOB_OPTIONS.optional_meta


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
# And the C encoder behind it built once: JSONEncoder.encode builds one per call, half the
# cost of encoding a small args dict. Without circular-reference markers it keeps no state
# between calls; a circular value ends in RecursionError, refused below like the rest.
_ENCODE_CHUNKS = (c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False)
                  if c_make_encoder is not None else None)


# A NUL's escape in JSON text: \u0000 after an even number of backslashes (an odd number
# escapes the backslash itself: the text "\u0000" that escaped NULs are stored as).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_json(value: Any, where: str) -> str:
    """Compact JSON for ``value``, refusing what Postgres jsonb cannot hold."""
    try:
        if _ENCODE_CHUNKS is not None and isinstance(value, dict):
            text = "".join(_ENCODE_CHUNKS(value, 0))
        else:
            text = _ENCODER.encode(value)
    except RecursionError:
        raise EnqueueError(f"{where} is not JSON: it contains itself, or is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise EnqueueError(f"{where} is not JSON: {exc}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise EnqueueError(f"{where} contains a NUL byte (\\u0000), which Postgres cannot store")
    return text


class Inserter:
    """Builds insert rows for :meth:`engine.db.store.JobStore.insert`.

    Example::

        rows = Inserter(registry, secrets).rows([JobSpec(kind="log", args={"message": "hi"})])
    """

    def __init__(self, registry: Registry, secrets: Secrets) -> None:
        self.registry = registry
        self.secrets = secrets

    def rows(self, specs: Sequence[JobSpec], start: int = 0, stop: int | None = None) -> list[InsertRow]:
        """One row per spec of ``specs[start:stop]``; raises :class:`EnqueueError` for the first
        bad one (naming its index in ``specs`` when there are several)."""
        rows = []
        for index in range(start, len(specs) if stop is None else min(stop, len(specs))):
            spec = specs[index]
            try:
                rows.append(self.row(spec))
            except EnqueueError as exc:
                if len(specs) == 1:
                    raise
                raise EnqueueError(f"job #{index} ({spec.kind}): {exc}") from None
        return rows

    def row(self, spec: JobSpec) -> InsertRow:
        try:
            handler = self.registry.get(spec.kind)
        except LookupError as exc:
            raise EnqueueError(str(exc)) from None
        if not isinstance(spec.args, dict):
            raise EnqueueError(f"args must be a JSON object, not {type(spec.args).__name__}")
        self._validate_args(spec, handler.args_model)
        args_json = encode_json(spec.args, "args")  # measured and checked here, sent as is
        if len(args_json) > MAX_ARGS_BYTES:
            raise EnqueueError(f"args are larger than {MAX_ARGS_BYTES} bytes")
        meta = self._meta(spec)
        if meta:
            encode_json(meta, "job options (vars, onSuccess, ...)")
            self.secrets.check_not_present(meta, "job options")
        self.secrets.check_not_present(spec.args, "args")
        self._check_secret_kinds(spec)
        tracing.inject(meta)  # the run continues the trace of the enqueue (or of the attempt that chains it)
        queue = spec.queue or handler.queue
        problem = path_segment_problem(queue)
        if problem:
            raise EnqueueError(f"queue name {queue!r} {problem}")
        row = InsertRow(
            queue=queue,
            kind=spec.kind,
            args=spec.args,
            args_json=args_json,
            meta=meta,
            priority=_int("priority", spec.priority, handler.priority),
            max_attempts=_positive("max_attempts", spec.max_attempts, handler.max_attempts),
            timeout=_seconds("timeout", spec.timeout if spec.timeout is not None else handler.timeout),
            scheduled_at=spec.scheduled_at.isoformat() if spec.scheduled_at else None,
            delay=_seconds("delay", spec.delay),
            tags=sorted({*spec.tags, *handler.tags}) if spec.tags or handler.tags else [],
        )
        if spec.unique is not None:
            self._apply_unique(spec, queue, row)
        if spec.condition is not None or spec.on_success or spec.on_failure or spec.depends_on:
            check_flow(self.row, spec, row, self.secrets)
        return row

    def _check_secret_kinds(self, spec: JobSpec) -> None:
        """A secret whose scope excludes this kind is refused now; hosts are checked when the
        job runs, once its URL or host is rendered (before any connection)."""
        if not self.secrets.declared:
            return
        used = {self.secrets.referenced_by(name) for name in placeholders_in(spec.args)
                if name.startswith("secrets.") or name not in (spec.vars or {})}
        try:
            self.secrets.check_use({name for name in used if name}, spec.kind)
        except SecretScopeError as exc:
            raise EnqueueError(str(exc)) from None

    def _validate_args(self, spec: JobSpec, model: Any) -> None:
        if model is None:
            return
        try:
            model.model_validate(spec.args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise EnqueueError(f"invalid args for {spec.kind!r}: {problems}") from None

    @staticmethod
    def _meta(spec: JobSpec) -> dict[str, Any]:
        meta: dict[str, Any] = dict(spec.extra_meta)
        if spec.vars:
            meta["vars"] = spec.vars
        if spec.depends_on:
            meta["depends_on"] = list(spec.depends_on)
        for name, key in _OPTIONAL_META:  # the plain job has none: a bulk insert pays only these reads
            value = getattr(spec, name)
            if value is not None:
                meta[key] = value
        return meta

    @staticmethod
    def _apply_unique(spec: JobSpec, queue: str, row: InsertRow) -> None:
        try:
            unique = parse_unique(spec.unique)
        except (TypeError, ValueError) as exc:
            raise EnqueueError(str(exc)) from None
        if unique is None:
            return
        keyed = JobSpec(kind=spec.kind, args=spec.args, queue=queue)
        row.unique_key = unique_key(keyed, unique)
        row.unique_states = [s for s in ALL_STATES if s in unique.states]


def _int(name: str, value: int | None, default: int) -> int:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnqueueError(f"{name} must be an integer, not {value!r}")
    if not -1_000_000 <= value <= 1_000_000:
        raise EnqueueError(f"{name} must be between -1000000 and 1000000")
    return value


def _positive(name: str, value: int | None, default: int) -> int:
    value = _int(name, value, default)
    if value < 1:
        raise EnqueueError(f"{name} must be >= 1, got {value}")
    return value


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise EnqueueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)
