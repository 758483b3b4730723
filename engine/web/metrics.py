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

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import GC_COLLECTOR, CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Tally:
    """A histogram's bucket counts and sum for one label set, kept in plain Python: an
    observation is a bisect and two additions, where prometheus_client's Histogram takes a
    label lookup and a lock per call (most of the dashboard's cost per job)."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0


class _JobSeries(Collector):
    """This process's job counters and histograms, folded into metric families at scrape
    time; prometheus_client writes the exposition."""

    def __init__(self) -> None:
        self.executions: dict[tuple[str, str, str], int] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.duration: dict[tuple[str, str], _Tally] = {}
        self.latency: dict[str, _Tally] = {}

    def observe(self, event: JobEvent) -> None:
        """Count one finished attempt (``job.stop``; other events count nothing): its state,
        run time and queue latency (the stop event carries it, as Oban's does)."""
        if event.name != "job.stop":
            return
        state = event.state or "unknown"
        key = (event.kind, event.queue, state)
        self.executions[key] = self.executions.get(key, 0) + 1
        pair = (event.kind, event.queue)
        if state in FAILED_STATES:
            self.failures[pair] = self.failures.get(pair, 0) + 1
        if event.duration is not None:
            tally = self.duration.get(pair) or self.duration.setdefault(pair, _Tally(len(DURATION_BUCKETS)))
            tally.counts[bisect_left(DURATION_BUCKETS, event.duration)] += 1
            tally.total += event.duration
        if event.queue_time is not None:
            latency = self.latency.get(event.queue) or self.latency.setdefault(
                event.queue, _Tally(len(LATENCY_BUCKETS)))
            latency.counts[bisect_left(LATENCY_BUCKETS, event.queue_time)] += 1
            latency.total += event.queue_time

    def collect(self) -> Iterator[Metric]:
        executions = CounterMetricFamily("jobengine_job_executions_total",
                                         "Attempts finished by this process, by the state they led to.",
                                         labels=["kind", "queue", "state"])
        for labels, count in self.executions.items():
            executions.add_metric(list(labels), count)
        failures = CounterMetricFamily("jobengine_job_failures_total",
                                       "Attempts that failed (to be retried or discarded), by this process.",
                                       labels=["kind", "queue"])
        for pair, count in self.failures.items():
            failures.add_metric(list(pair), count)
        yield executions
        yield failures
        yield _histogram("jobengine_job_duration_seconds", "Handler run time per attempt.", ["kind", "queue"],
                         DURATION_BUCKETS, self.duration.items())
        yield _histogram("jobengine_job_queue_latency_seconds", "Time from a job being due to its attempt starting.",
                         ["queue"], LATENCY_BUCKETS, (((queue,), tally) for queue, tally in self.latency.items()))

    def describe(self) -> Iterator[Metric]:
        return iter(())  # label sets appear as jobs run: registering must not collect


def _histogram(name: str, help_text: str, labels: list[str], bounds: Sequence[float],
               tallies: Iterable[tuple[tuple[str, ...], _Tally]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for label_values, tally in tallies:
        cumulative, buckets = 0, []
        for bound, count in zip([*map(floatToGoString, bounds), "+Inf"], tally.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(label_values), buckets, tally.total)
    return family


class Metrics:
    """This process's job metrics, fed by engine events, in a registry of their own (two
    dashboards in one process do not share series)."""

    def __init__(self, running: Callable[[], Mapping[str, int]] | None = None) -> None:
        """``running``: attempts running in this process per queue, read at scrape (the
        engine's producers know it; counting starts would cost every job an event)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._jobs = _JobSeries()
        self.registry.register(self._jobs)
        self._running = running or dict
        self._scrape = _ScrapeGauges(self._running_gauge)
        self.registry.register(self._scrape)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if GC_COLLECTOR is not None:
            GCCollector(registry=self.registry)

    def attach(self, events: Events) -> Callable[[], None]:
        """Subscribe to ``events`` (finished attempts only); returns the function that unsubscribes."""
        return events.subscribe(self._jobs.observe, names=("job.stop",))

    def observe(self, event: JobEvent) -> None:
        """Count ``event`` as an attached subscriber would (finished attempts; others are ignored)."""
        self._jobs.observe(event)

    def _running_gauge(self) -> Gauge:
        return Gauge("jobengine_jobs_running", "Attempts running in this process now.",
                     {(("queue", queue),): count for queue, count in self._running().items()})

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
