"""Unique jobs: the key that makes a duplicate insert return the existing job."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from engine.core.job import JobSpec, JobState, UniqueSpec

ALL_STATES = tuple(state.value for state in JobState)


def unique_key(spec: JobSpec, unique: UniqueSpec, *, now: float | None = None) -> str:
    """The key two jobs share exactly when they are duplicates of each other.

    Kind, queue and the selected args (all args when ``keys`` is empty), or an
    explicit ``key``; with a ``period`` the key also carries the period's bucket
    (``floor(epoch / period)``: clock-aligned, as River's ``ByPeriod``), so a new job
    may be inserted once the bucket has passed. The database enforces the key: the
    partial unique index ``jobs_unique_idx`` covers a row only while it is in its
    ``unique_states``.

    Example::

        unique_key(JobSpec(kind="http", args={"url": "u", "n": 1}, queue="default"), UniqueSpec(keys=("url",)))
    """
    if unique.key is not None:
        identity: Any = ["key", spec.kind, unique.key]
    else:
        selected = {k: spec.args.get(k) for k in unique.keys} if unique.keys else spec.args
        identity = ["args", spec.kind, spec.queue, selected]
    if unique.period:
        current = time.time() if now is None else now
        identity.append(int(current // unique.period))
    encoded = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def parse_unique(value: UniqueSpec | dict[str, Any] | bool | None) -> UniqueSpec | None:
    """Accept ``unique=True``, a dict like ``{"keys": ["url"], "period": 60}``, or a UniqueSpec."""
    if value is None or value is False:
        return None
    if value is True:
        return UniqueSpec()
    if isinstance(value, UniqueSpec):
        spec = value
    elif isinstance(value, dict):
        unknown = set(value) - {"keys", "key", "period", "states"}
        if unknown:
            raise ValueError(f"unique: unknown field(s) {', '.join(sorted(unknown))}")
        spec = UniqueSpec(
            keys=tuple(value.get("keys") or ()),
            key=value.get("key"),
            period=value.get("period"),
            states=tuple(value.get("states") or UniqueSpec().states),
        )
    else:
        raise TypeError(f"unique must be a dict, True or UniqueSpec, not {type(value).__name__}")
    bad = [s for s in spec.states if s not in ALL_STATES]
    if bad:
        raise ValueError(f"unique.states: unknown state(s) {', '.join(bad)}")
    if spec.period is not None and spec.period <= 0:
        raise ValueError("unique.period must be > 0 seconds")
    return spec
