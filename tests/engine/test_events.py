"""In-process job events: who hears what, and that an emitter can skip building events
nobody reads (the executor builds a job's start and stop only when someone listens)."""

from __future__ import annotations

from collections.abc import Callable

from structlog.testing import capture_logs

from engine.core.events import Events, JobEvent


def _event(name: str) -> JobEvent:
    return JobEvent(name, 7, "kind", "default", 1, state="completed" if name == "job.stop" else None)


def test_a_subscriber_of_named_events_hears_only_those_and_emitters_know_who_wants_what() -> None:
    events = Events()
    assert not events.active and not events.wants("job.start") and not events.wants("job.stop")
    stops: list[str] = []
    everything: list[str] = []
    leave_stops = events.subscribe(lambda e: stops.append(e.name), names=("job.stop",))
    assert events.wants("job.stop") and not events.wants("job.start")
    for name in ("job.start", "job.stop", "job.log"):
        events.emit(_event(name))
    assert stops == ["job.stop"]

    leave_all = events.subscribe(lambda e: everything.append(e.name))
    assert events.wants("job.start") and events.wants("job.log")
    for name in ("job.start", "job.stop"):
        events.emit(_event(name))
    assert stops == ["job.stop", "job.stop"] and everything == ["job.start", "job.stop"]

    leave_all()
    leave_all()  # a second call is harmless
    assert not events.wants("job.start") and events.wants("job.stop")
    leave_stops()
    assert not events.active


def test_a_failing_subscriber_is_logged_and_the_others_still_hear_the_event() -> None:
    events = Events()
    heard: list[int] = []

    def broken(_event: JobEvent) -> None:
        raise RuntimeError("a metrics bug")

    events.subscribe(broken)
    events.subscribe(lambda e: heard.append(e.job_id), names=("job.stop",))
    with capture_logs() as logged:
        events.emit(_event("job.stop"))
    assert heard == [7]
    assert [(e["event"], e["log_level"]) for e in logged] == [("event subscriber failed", "error")]


def test_a_subscriber_leaving_while_an_event_goes_out_does_not_disturb_it() -> None:
    events = Events()
    heard: list[str] = []
    leave: list[Callable[[], None]] = []

    def first(_event: JobEvent) -> None:
        heard.append("first")
        leave[0]()

    leave.append(events.subscribe(first))
    events.subscribe(lambda _e: heard.append("second"))
    events.emit(_event("job.start"))
    events.emit(_event("job.start"))
    assert heard == ["first", "second", "second"]
