"""In-process events about jobs (the telemetry metrics and tests subscribe to)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("jobengine.events")


@dataclass(slots=True)
class JobEvent:
    """``name`` is ``job.start`` or ``job.stop``; ``state`` is the state the ack asked for
    (``job.stop``), ``duration`` the handler's run time in seconds, ``queue_time`` the time
    from scheduled to start. Every subscriber gets the same event: read it, never change it.
    (Not frozen: a frozen dataclass sets each field through object.__setattr__, and two
    events per job made that most of what the dashboard's metrics cost per job.)"""

    name: str
    job_id: int
    kind: str
    queue: str
    attempt: int
    state: str | None = None
    duration: float | None = None
    queue_time: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[JobEvent], None]


class Events:
    """Synchronous fan-out of job events; a failing subscriber is logged, never fatal.

    Example::

        events = Events()
        events.subscribe(lambda e: print(e.name, e.job_id))
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    @property
    def active(self) -> bool:
        """Whether anyone listens: emitters skip building events nobody reads."""
        return bool(self._subscribers)

    def emit(self, event: JobEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a metrics bug must not fail a job
                log.exception("event subscriber failed", event=event.name)
