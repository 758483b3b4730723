"""examples/fastapi_app.py under a real uvicorn: the lifespan starts a processing engine, a route
enqueues, and the dashboard answers under /ops/jobs behind the app's own auth."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.testing import wait_for_job
from examples.fastapi_app import create_app
from tests.support.tracing import named
from tests.support.waiting import wait_until


async def test_the_fastapi_example_enqueues_runs_and_mounts_the_dashboard(make_config, run_asgi) -> None:
    app = create_app(make_config(queues={"default": {"concurrency": 2}}), password="pw")
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    async with run_asgi(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/signup", json={"email": "a@example.com"}) as response:
            assert response.status == 200
            job_id = (await response.json())["job_id"]
        done = await wait_for_job(app.state.engine, job_id)
        assert done.state == "completed" and done.result == {"welcomed": "a@example.com"}

        async with http.get(f"{base}/ops/jobs/") as response:
            assert response.status == 401  # the app's auth comes first
        async with http.get(f"{base}/ops/jobs/", headers=auth) as response:
            page = await response.text()
            assert response.status == 200 and "Content-Security-Policy" in response.headers
        assert 'href="/ops/jobs/jobs' in page and 'href="/jobs' not in page
        assert 'src="/ops/jobs/static/' in page or 'href="/ops/jobs/static/' in page
        async with http.get(f"{base}/ops/jobs/jobs/{job_id}", headers=auth) as response:
            assert response.status == 200 and "a@example.com" in await response.text()

        async with http.post(f"{base}/ops/jobs/jobs/{job_id}/retry", headers=auth, allow_redirects=False,
                             data={"next": f"/jobs/{job_id}"}) as response:
            assert response.status == 303
            assert response.headers["Location"].startswith(f"/ops/jobs/jobs/{job_id}?")
        async with http.post(f"{base}/ops/jobs/jobs/{job_id}/cancel", allow_redirects=False,
                             headers={**auth, "Sec-Fetch-Site": "cross-site"}) as response:
            assert response.status == 403
        await wait_for_job(app.state.engine, job_id)  # the retried job ran again


async def test_one_trace_runs_from_the_fastapi_request_through_the_job_to_its_http_call(
        make_config, run_asgi, spans: InMemorySpanExporter, hook_peer: dict[str, Any]) -> None:
    config = make_config(queues={"default": {"concurrency": 2}}, http={"allow": ["127.0.0.1"]})
    app = create_app(config, password="pw", crm_webhook=hook_peer["url"])
    FastAPIInstrumentor.instrument_app(app)
    async with run_asgi(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/signup", json={"email": "t@example.com"}) as response:
            crm_job_id = (await response.json())["crm_job_id"]
        assert (await wait_for_job(app.state.engine, crm_job_id)).state == "completed"
        await wait_until(lambda: named(spans, "jobengine run http"), what="the http job's span ended")

    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    (enqueue,) = named(spans, "jobengine enqueue http")
    (run,) = named(spans, "jobengine run http")
    (call,) = [s for s in finished if s.kind == trace.SpanKind.CLIENT and s.parent is not None
               and s.parent.span_id == run.context.span_id]
    assert request.name == "POST /signup"
    assert {s.context.trace_id for s in (request, enqueue, run, call)} == {request.context.trace_id}
    assert enqueue.parent.span_id == request.context.span_id
    assert run.parent.span_id == enqueue.context.span_id
    assert call.attributes.get("http.response.status_code", call.attributes.get("http.status_code")) == 200
    assert hook_peer["traceparents"] and all(
        header.split("-")[1] == format(request.context.trace_id, "032x") for header in hook_peer["traceparents"])
