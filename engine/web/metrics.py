"""Prometheus metrics through ``prometheus_client``, one registry per dashboard application.

Counters and histograms are fed in-process from :class:`engine.core.events.Events` (so they count
this process's attempts, as Prometheus expects of one scrape target); gauges of jobs per
queue and state come from the database at scrape time and describe the whole cluster. The
registry also carries the library's process, platform and garbage-collector metrics
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``python_info``, ...).

Example::

    metrics = Metrics()
    detach = metrics.attach(engine.events)
    text = metrics.render([Gauge("jobengine_jobs", "Jobs per queue and state",
                                 {(("queue", "default"), ("state", "available")): 3})])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from engine.core.events import Events, JobEvent

Labels = tuple[tuple[str, str], ...]
# Handler run times: from a quick log line to a long SSH command.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Time from due to started: how far behind the queues are.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
FAILED_STATES = frozenset({"retryable", "discarded"})


@dataclass(slots=True)
class Gauge:
    """A gauge family read at scrape time; ``samples`` maps label pairs (the same names in
    every sample) to a value. ``counter``: a total kept elsewhere, exposed as a counter."""

    name: str
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)
    counter: bool = False

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        names = [name for name, _ in next(iter(self.samples), ())]
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        family = kind(self.name, self.help, labels=names)
        for labels, value in sorted(self.samples.items()):
            family.add_metric([value for _, value in labels], value)
        return family


class _ScrapeGauges(Collector):
    """Yields the gauges handed to the scrape in progress (the database's view)."""

    def __init__(self, running: Callable[[], Gauge]) -> None:
        self.gauges: Sequence[Gauge] = ()
        self.running = running

    def collect(self) -> Iterator[Metric]:
        for gauge in (*self.gauges, self.running()):
            yield gauge.family()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families vary per scrape: registering must not collect


class Metrics:
    """This process's job metrics, fed by engine events, in a registry of their own (two
    dashboards in one process do not share series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter("jobengine_job_executions_total",
                                  "Attempts finished by this process, by the state they led to.",
                                  ["kind", "queue", "state"], registry=self.registry)
        self.failures = Counter("jobengine_job_failures_total",
                                "Attempts that failed (to be retried or discarded), by this process.",
                                ["kind", "queue"], registry=self.registry)
        self.duration = Histogram("jobengine_job_duration_seconds", "Handler run time per attempt.",
                                  ["kind", "queue"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.latency = Histogram("jobengine_job_queue_latency_seconds",
                                 "Time from a job being due to its attempt starting.", ["queue"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.running: dict[str, float] = {}
        self._scrape = _ScrapeGauges(self._running_gauge)
        self.registry.register(self._scrape)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if GC_COLLECTOR is not None:
            GCCollector(registry=self.registry)

    def attach(self, events: Events) -> Callable[[], None]:
        """Subscribe to ``events``; returns the function that unsubscribes."""
        return events.subscribe(self.observe)

    def observe(self, event: JobEvent) -> None:
        if event.name == "job.start":
            self.running[event.queue] = self.running.get(event.queue, 0) + 1
            if event.queue_time is not None:
                self.latency.labels(event.queue).observe(event.queue_time)
        elif event.name == "job.stop":
            self.running[event.queue] = max(0, self.running.get(event.queue, 0) - 1)
            self.executions.labels(event.kind, event.queue, event.state or "unknown").inc()
            if event.state in FAILED_STATES:
                self.failures.labels(event.kind, event.queue).inc()
            if event.duration is not None:
                self.duration.labels(event.kind, event.queue).observe(event.duration)

    def _running_gauge(self) -> Gauge:
        return Gauge("jobengine_jobs_running", "Attempts running in this process now.",
                     {(("queue", queue),): count for queue, count in self.running.items()})

    def render(self, gauges: Sequence[Gauge] = ()) -> str:
        """The exposition in the Prometheus text format (version 0.0.4)."""
        return self.exposition(gauges)[0].decode()

    def exposition(self, gauges: Sequence[Gauge] = (), accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (``gauges`` from the database, this process's series, the process
        metrics) in the format the scraper's ``Accept`` header asks for, and its content type."""
        encode, content_type = choose_encoder(accept or "")
        self._scrape.gauges = gauges
        try:
            return encode(self.registry), content_type
        finally:
            self._scrape.gauges = ()
