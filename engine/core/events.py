"""In-process events about jobs (the telemetry metrics and tests subscribe to)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("jobengine.events")


@dataclass(slots=True)
class JobEvent:
    """``name`` is ``job.start``, ``job.stop`` or ``job.log``; ``state`` is the state the ack
    asked for (``job.stop``), ``duration`` the handler's run time in seconds, ``queue_time``
    the time from scheduled to start (on both ``job.start`` and ``job.stop``, as Oban's
    telemetry has it, so a subscriber of the stop alone sees it). Every subscriber gets the
    same event: read it, never change it.
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
    """Synchronous fan-out of job events; a failing subscriber is logged, never fatal. A
    subscriber may name the events it reads: an emitter asks :meth:`wants` first and builds
    none that nobody reads (two per job, when only the metrics listen, would be one too many).

    Example::

        events = Events()
        events.subscribe(lambda e: print(e.name, e.job_id))
        events.subscribe(count_finished, names=("job.stop",))
    """

    def __init__(self) -> None:
        # (subscriber, the names it reads or None for all), replaced on (un)subscribe: emit,
        # twice per job, reads a tuple per name without a copy, and a subscriber that leaves
        # while an event goes out does not disturb it.
        self._entries: tuple[tuple[Subscriber, frozenset[str] | None], ...] = ()
        self._by_name: dict[str, tuple[Subscriber, ...]] = {}
        self._catch_all: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber, *, names: Iterable[str] | None = None) -> Callable[[], None]:
        """Add a subscriber (of the events called ``names`` only, when given); returns a
        function that removes it (calling it twice is harmless)."""
        entry = (subscriber, frozenset(names) if names is not None else None)
        self._entries = (*self._entries, entry)
        self._index()

        def unsubscribe() -> None:
            kept = list(self._entries)
            if entry in kept:
                kept.remove(entry)
                self._entries = tuple(kept)
                self._index()

        return unsubscribe

    def _index(self) -> None:
        self._catch_all = tuple(subscriber for subscriber, names in self._entries if names is None)
        named = {name for _, names in self._entries if names for name in names}
        self._by_name = {name: tuple(subscriber for subscriber, names in self._entries
                                     if names is None or name in names) for name in named}

    @property
    def active(self) -> bool:
        """Whether anyone listens to any event."""
        return bool(self._entries)

    def wants(self, name: str) -> bool:
        """Whether anyone reads events called ``name``: emitters skip building the others."""
        return bool(self._by_name.get(name, self._catch_all))

    def emit(self, event: JobEvent) -> None:
        for subscriber in self._by_name.get(event.name, self._catch_all):
            try:
                subscriber(event)
            except Exception:  # a metrics bug must not fail a job
                log.exception("event subscriber failed", job_event=event.name, job_id=event.job_id)
