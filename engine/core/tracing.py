"""OpenTelemetry spans for enqueues and attempts (the optional ``jobengine[otel]`` extra).

A span per enqueue (``jobengine enqueue <kind>``, kind PRODUCER) and per attempt
(``jobengine run <kind>``, kind CONSUMER). The enqueue stores the trace context (W3C
``traceparent``) in the job's meta under ``trace``; the attempt continues that trace, so one
trace shows the web request, the enqueue, the job's run and what the handler calls (an
instrumented HTTP client, a database driver), even on another node hours later. A job enqueued
during an attempt (a chain, a failure notification) is a child of that attempt.

Off unless the ``opentelemetry`` API is installed *and* the application has set a tracer
provider; an engine without tracing pays one clock read per attempt.

Attributes: ``jobengine.kind``, ``jobengine.queue``, ``jobengine.job_id``, ``jobengine.attempt``,
``jobengine.outcome`` (the state the attempt led to), and ``messaging.system = "jobengine"``.

Example::

    trace.set_tracer_provider(TracerProvider())       # the application's usual setup
    await engine.enqueue("http", {...})               # meta["trace"] = {"traceparent": "00-..."}
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed: tracing stays off
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from engine.core.job import Job

META_KEY = "trace"
TRACER_NAME = "jobengine"
FAILED_OUTCOMES = frozenset({"retryable", "discarded"})
RECHECK_SECONDS = 1.0


class _Switch:
    """Whether a tracer provider is set, looked up at most once a second: the lookup reads
    ``os.environ`` (about 2 us, more than a no-op job's whole attempt budget allows), and a
    provider, once set, stays set."""

    def __init__(self) -> None:
        self.on = False
        self.next_check = 0.0

    def refresh(self) -> bool:
        self.next_check = time.monotonic() + RECHECK_SECONDS
        self.on = trace is not None and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        return self.on


_switch = _Switch()


def active() -> bool:
    """True when spans are recorded: the API is installed and the application set a provider
    (noticed within a second of it being set)."""
    if _switch.on:
        return True
    if time.monotonic() < _switch.next_check:
        return False
    return _switch.refresh()


def refresh() -> bool:
    """Look for a tracer provider now (tests that set and unset one)."""
    return _switch.refresh()


def inject(meta: dict[str, Any]) -> None:
    """Store the current trace context in ``meta`` (nothing when no span is current)."""
    if not active():
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if carrier:
        meta[META_KEY] = carrier


def enqueue_span(kinds: Sequence[str]) -> Any:
    """The span of one enqueue (a batch is one span); a no-op context when tracing is off."""
    if not active() or not kinds:
        return nullcontext(None)
    kind = kinds[0] if len(set(kinds)) == 1 else "batch"
    attributes: dict[str, Any] = {"messaging.system": TRACER_NAME, "messaging.operation.type": "create",
                                  "jobengine.kind": kind, "jobengine.batch_size": len(kinds)}
    return trace.get_tracer(TRACER_NAME).start_as_current_span(
        f"jobengine enqueue {kind}", kind=trace.SpanKind.PRODUCER, attributes=attributes)


@contextmanager
def attempt_span(job: Job) -> Iterator[Any]:
    """The span of one attempt, a child of the enqueue whose context the job's meta carries."""
    carrier = job.meta.get(META_KEY)
    parent = propagate.extract(carrier) if isinstance(carrier, Mapping) else otel_context.Context()
    attributes: dict[str, Any] = {"messaging.system": TRACER_NAME, "messaging.operation.type": "process",
                                  "jobengine.kind": job.kind, "jobengine.queue": job.queue,
                                  "jobengine.job_id": job.id, "jobengine.attempt": job.attempt}
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
            f"jobengine run {job.kind}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes,
            record_exception=False, set_status_on_exception=False) as span:
        yield span


def finish(span: Any, outcome: str, error: str | None) -> None:
    """Record the attempt's outcome on its span (an error status for a failed attempt)."""
    span.set_attribute("jobengine.outcome", outcome)
    if outcome in FAILED_OUTCOMES:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error or outcome))


def enqueued(span: Any, jobs: Sequence[Job]) -> None:
    """Name the inserted jobs (and their queue) on the enqueue span."""
    if span is None or not jobs:
        return
    span.set_attribute("jobengine.job_ids", [job.id for job in jobs])
    queues = {job.queue for job in jobs}
    if len(queues) == 1:
        span.set_attribute("jobengine.queue", queues.pop())
