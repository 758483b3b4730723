"""What a handler can return or raise, besides a plain result.

Outcomes are values (return them); failures are exceptions (raise them)::

    return Snooze(30)                 # run again in 30 s, attempt not spent
    return Cancel("user deleted")     # -> cancelled, no retry
    return Discard("bad payload")     # -> discarded, no retry
    raise RetryAfter(60, "rate limited")   # failed attempt, next no sooner than 60 s
    raise PermanentError("404 Not Found")  # failed attempt, discarded at once
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snooze:
    """Reschedule the job ``seconds`` from now without spending an attempt."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise ValueError(f"Snooze seconds must be >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the job now: state ``cancelled``, no further attempts."""

    reason: str = "cancelled by handler"


@dataclass(frozen=True, slots=True)
class Discard:
    """Give up on the job now: state ``discarded``, no further attempts."""

    reason: str = "discarded by handler"


class RetryAfter(Exception):
    """A failed attempt whose next try must wait at least ``seconds`` (e.g. HTTP Retry-After)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds:g}s")
        self.seconds = max(0.0, float(seconds))


class PermanentError(Exception):
    """A failed attempt that no retry can fix: the job is discarded at once."""
