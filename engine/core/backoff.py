"""Retry delays: exponential with jitter by default, overridable per kind and per job."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

DEFAULT_BASE = 5.0
DEFAULT_CAP = 3600.0
JITTER = 0.2


def exponential(attempt: int, *, base: float = DEFAULT_BASE, cap: float = DEFAULT_CAP,
                jitter: float = JITTER, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after failed ``attempt`` (1-based): ``base * 2**(attempt-1)``,
    capped, then spread by ±``jitter`` so a burst of failures does not retry in lockstep.

    >>> 4.0 <= exponential(1) <= 6.0
    True
    """
    delay = min(base * 2.0 ** max(attempt - 1, 0), cap)
    return max(0.0, delay * (1 - jitter + 2 * jitter * rng()))


def jittered(failures: int, *, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """The wait before retrying an infrastructure operation (a connect, an ack write, a
    lock) after ``failures`` failures in a row: ``base * 2**failures`` capped at ``cap``,
    spread over 0.5x-1.5x so processes that failed together do not retry together.

    >>> 0.1 <= jittered(1, base=0.1, cap=10.0) <= 0.3
    True
    """
    return min(cap, base * 2.0**failures) * (0.5 + rng())


def from_document(backoff: dict[str, Any]) -> Callable[[int], float]:
    """The BullMQ-style per-job option ``{"type": "exponential"|"fixed", "delay": ms}``."""
    kind = backoff.get("type", "exponential")
    delay = float(backoff.get("delay", DEFAULT_BASE * 1000)) / 1000
    if kind == "fixed":
        return lambda _attempt: delay
    if kind == "exponential":
        return lambda attempt: exponential(attempt, base=delay)
    raise ValueError(f"backoff.type must be 'exponential' or 'fixed', not {kind!r}")
