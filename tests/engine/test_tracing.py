"""OpenTelemetry with the real SDK's in-memory exporter, against real Postgres and a real aiohttp
server: a request span -> the enqueue span -> the attempt span (through the trace context in
the job's meta) -> the instrumented HTTP call of the built-in http handler, one trace; the
attempt's kind, queue, attempt and outcome as attributes; nothing when no provider is set."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.core import tracing
from engine.core.job import Job
from engine.core.registry import Registry
from engine.testing import wait_for_job
from tests.support.tracing import named, reset_global_provider
from tests.support.waiting import wait_until


def flaky_registry() -> Registry:
    registry = Registry()

    @registry.handler("ok", queue="default")
    async def ok(job: Job) -> str:
        return "fine"

    @registry.handler("flaky", queue="default", max_attempts=3)
    async def flaky(job: Job) -> None:
        raise RuntimeError("upstream down")

    return registry


async def test_one_trace_links_the_request_the_enqueue_the_run_and_its_http_call(
        start_engine, spans: InMemorySpanExporter, hook_peer: dict[str, Any]) -> None:
    engine = await start_engine(flaky_registry(), queues={"default": {"concurrency": 2}},
                                http={"allow": ["127.0.0.1"]})
    tracer = trace.get_tracer("the web app")
    with tracer.start_as_current_span("POST /signup", kind=trace.SpanKind.SERVER) as request:
        job = await engine.enqueue("http", {"method": "POST", "url": hook_peer["url"], "body": {"user": 7}})
    assert job.meta["trace"]["traceparent"].split("-")[1] == format(request.get_span_context().trace_id, "032x")
    assert (await wait_for_job(engine, job.id)).state == "completed"
    await wait_until(lambda: named(spans, "jobengine run http"), what="the attempt span ended")

    (enqueue,) = named(spans, "jobengine enqueue http")
    (run,) = named(spans, "jobengine run http")
    (call,) = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (enqueue, run, call)} == {trace_id}
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.parent.span_id == enqueue.context.span_id
    assert call.parent.span_id == run.context.span_id
    assert enqueue.kind == trace.SpanKind.PRODUCER and run.kind == trace.SpanKind.CONSUMER
    assert dict(enqueue.attributes).items() >= {"jobengine.kind": "http", "jobengine.queue": "default",
                                        "jobengine.job_ids": (job.id,)}.items()
    assert dict(run.attributes).items() >= {"jobengine.kind": "http", "jobengine.queue": "default",
                                    "jobengine.job_id": job.id, "jobengine.attempt": 1,
                                    "jobengine.outcome": "completed"}.items()
    # The HTTP peer saw the same trace in the request's traceparent header.
    assert hook_peer["traceparents"][0].split("-")[1] == format(trace_id, "032x")


async def test_a_failed_attempt_records_its_outcome_and_an_error_status(
        start_engine, spans: InMemorySpanExporter) -> None:
    engine = await start_engine(flaky_registry(), queues={"default": {"concurrency": 2}})
    job = await engine.enqueue("flaky", {}, backoff={"type": "fixed", "delay": 60_000})
    await wait_for_job(engine, job.id, states={"retryable"})
    (run,) = await wait_until(lambda: named(spans, "jobengine run flaky"))
    assert run.attributes["jobengine.outcome"] == "retryable" and run.attributes["jobengine.attempt"] == 1
    assert run.status.status_code == trace.StatusCode.ERROR
    assert run.status.description == "RuntimeError: upstream down"
    (enqueue,) = named(spans, "jobengine enqueue flaky")
    assert run.parent.span_id == enqueue.context.span_id  # no request around it: the enqueue is the root


async def test_without_a_tracer_provider_nothing_is_traced_or_stored(start_engine) -> None:
    reset_global_provider()
    assert not tracing.active()
    engine = await start_engine(flaky_registry())
    job = await engine.enqueue("flaky", {})
    assert "trace" not in job.meta and "trace" not in (await engine.get(job.id)).meta


async def test_a_job_chained_from_an_attempt_runs_as_that_attempts_child(
        start_engine, spans: InMemorySpanExporter) -> None:
    engine = await start_engine(flaky_registry(), queues={"default": {"concurrency": 2}})
    parent = await engine.enqueue("ok", {"step": 1}, on_success={"jobType": "ok", "data": {"step": 2}})
    await wait_for_job(engine, parent.id)
    first, second = await wait_until(lambda: len(found := named(spans, "jobengine run ok")) == 2 and found)
    assert first.attributes["jobengine.job_id"] == parent.id
    assert second.parent.span_id == first.context.span_id
    assert second.context.trace_id == first.context.trace_id
