"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Counters and histograms are fed in-process from :class:`engine.core.events.Events` (so they count
this process's attempts, as Prometheus expects of one scrape target); gauges of jobs per
queue and state come from the database at scrape time and describe the whole cluster.

Example::

    metrics = Metrics()
    detach = metrics.attach(engine.events)
    text = metrics.render(gauges=[Gauge("jobengine_jobs", "Jobs per queue and state",
                                        {(("queue", "default"), ("state", "available")): 3})])
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from engine.core.events import Events, JobEvent

Labels = tuple[tuple[str, str], ...]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Handler run times: from a quick log line to a long SSH command.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Time from due to started: how far behind the queues are.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
FAILED_STATES = frozenset({"retryable", "discarded"})


def escape(value: str) -> str:
    """A label value as the exposition format wants it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(slots=True)
class Gauge:
    """A gauge family; ``samples`` maps label pairs to a value."""

    name: str
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def lines(self) -> Iterable[str]:
        return _sample_lines(self.name, self.help, "gauge", self.samples)


def _sample_lines(name: str, help_text: str, kind: str, samples: dict[Labels, float]) -> Iterable[str]:
    """One metric in the Prometheus text format: HELP, TYPE, then a line per label set."""
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"
    for labels, value in sorted(samples.items()):
        yield f"{name}{_labels(labels)} {_number(value)}"


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.samples[labels] = self.samples.get(labels, 0.0) + amount

    def lines(self) -> Iterable[str]:
        return _sample_lines(self.name, self.help, "counter", self.samples)


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    # labels -> (per-bucket counts, the last one +Inf; sum)
    series: dict[Labels, tuple[list[int], list[float]]] = field(default_factory=dict)

    def observe(self, labels: Labels, value: float) -> None:
        counts, total = self.series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect_left(self.buckets, value)] += 1
        total[0] += value

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, (counts, total) in sorted(self.series.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                yield f"{self.name}_bucket{_labels(labels, (('le', _number(bound)),))} {running}"
            yield f"{self.name}_sum{_labels(labels)} {_number(total[0])}"
            yield f"{self.name}_count{_labels(labels)} {running}"


class Metrics:
    """This process's job metrics, fed by engine events."""

    def __init__(self) -> None:
        self.executions = Counter("jobengine_job_executions_total",
                                  "Attempts finished by this process, by the state they led to.")
        self.failures = Counter("jobengine_job_failures_total",
                                "Attempts that failed (to be retried or discarded), by this process.")
        self.duration = Histogram("jobengine_job_duration_seconds", "Handler run time per attempt.",
                                  DURATION_BUCKETS)
        self.latency = Histogram("jobengine_job_queue_latency_seconds",
                                 "Time from a job being due to its attempt starting.", LATENCY_BUCKETS)
        self.running: dict[Labels, float] = {}

    def attach(self, events: Events) -> Callable[[], None]:
        """Subscribe to ``events``; returns the function that unsubscribes."""
        return events.subscribe(self.observe)

    def observe(self, event: JobEvent) -> None:
        queue: Labels = (("queue", event.queue),)
        if event.name == "job.start":
            self.running[queue] = self.running.get(queue, 0) + 1
            if event.queue_time is not None:
                self.latency.observe(queue, event.queue_time)
        elif event.name == "job.stop":
            self.running[queue] = max(0, self.running.get(queue, 0) - 1)
            kind: Labels = (("kind", event.kind), ("queue", event.queue))
            self.executions.inc((*kind, ("state", event.state or "unknown")))
            if event.state in FAILED_STATES:
                self.failures.inc(kind)
            if event.duration is not None:
                self.duration.observe(kind, event.duration)

    def render(self, gauges: Sequence[Gauge] = ()) -> str:
        """The whole exposition: ``gauges`` (from the database) then this process's series."""
        running = Gauge("jobengine_jobs_running", "Attempts running in this process now.", dict(self.running))
        families: list[Gauge | Counter | Histogram] = [*gauges, running, self.executions, self.failures,
                                                       self.duration, self.latency]
        return "\n".join(line for family in families for line in family.lines()) + "\n"
