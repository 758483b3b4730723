"""/metrics in the Prometheus text format: per-process counters and histograms from engine
events, and cluster gauges (jobs per queue and state) from Postgres."""

from __future__ import annotations

import re

from engine.core.events import JobEvent
from engine.web.metrics import Gauge, Metrics
from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, matching the given labels exactly."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


def test_exposition_format_escapes_labels_and_accumulates_buckets() -> None:
    metrics = Metrics()
    for duration in (0.003, 0.2, 7.0):
        metrics.observe(JobEvent("job.start", 1, 'we"ird\nkind', "q", 1, queue_time=0.5))  # counts nothing
        metrics.observe(JobEvent("job.stop", 1, 'we"ird\nkind', "q", 1, state="completed", duration=duration,
                                 queue_time=0.5))
    metrics.observe(JobEvent("job.stop", 2, "k", "q", 1, state="retryable", duration=0.01))
    text = metrics.render([Gauge("jobengine_nodes", "Nodes.", {(): 2})])
    assert 'kind="we\\"ird\\nkind"' in text
    kind = 'we\\"ird\\nkind'
    assert _sample(text, "jobengine_job_duration_seconds_bucket", kind=kind, queue="q", le="0.005") == 1
    assert _sample(text, "jobengine_job_duration_seconds_bucket", kind=kind, queue="q", le="0.25") == 2
    assert _sample(text, "jobengine_job_duration_seconds_bucket", kind=kind, queue="q", le="+Inf") == 3
    assert _sample(text, "jobengine_job_duration_seconds_count", kind=kind, queue="q") == 3
    assert _sample(text, "jobengine_job_failures_total", kind="k", queue="q") == 1
    assert _sample(text, "jobengine_job_queue_latency_seconds_count", queue="q") == 3
    # A value on a bound counts in that bound's bucket (le: less than or equal).
    assert _sample(text, "jobengine_job_queue_latency_seconds_bucket", queue="q", le="0.25") == 0
    assert _sample(text, "jobengine_job_queue_latency_seconds_bucket", queue="q", le="0.5") == 3
    assert _sample(text, "jobengine_job_queue_latency_seconds_sum", queue="q") == 1.5
    assert _sample(text, "jobengine_job_executions_total", kind="k", queue="q", state="retryable") == 1
    assert _sample(text, "jobengine_nodes") == 2
    assert "# TYPE jobengine_job_duration_seconds histogram" in text and text.endswith("\n")


async def test_metrics_count_executions_failures_and_jobs_by_state(dashboard: Dashboard, http) -> None:
    engine = dashboard.engine
    ok = [await engine.enqueue("scripted", {"action": "ok"}) for _ in range(3)]
    bad = await engine.enqueue("flaky", {"key": "m"})
    waiting = await engine.enqueue("scripted", {"action": "ok"}, delay=3600)

    async def finished() -> bool:
        states = [(await engine.get(job.id)).state for job in [*ok, bad]]  # type: ignore[union-attr]
        return set(states) <= {"completed", "discarded"}

    await wait_until(finished)
    async with http.get(dashboard.url + "/metrics", headers=dashboard.auth) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    assert _sample(text, "jobengine_database_up") == 1
    assert _sample(text, "jobengine_job_executions_total", kind="scripted", queue="default", state="completed") == 3
    assert _sample(text, "jobengine_job_executions_total", kind="flaky", queue="default", state="discarded") == 1
    assert _sample(text, "jobengine_job_failures_total", kind="flaky", queue="default") == 1
    assert _sample(text, "jobengine_job_duration_seconds_count", kind="scripted", queue="default") == 3
    assert _sample(text, "jobengine_jobs", queue="default", state="completed") == 3
    assert _sample(text, "jobengine_jobs", queue="default", state="scheduled") == 1
    assert _sample(text, "jobengine_queue_paused", queue="default") == 0
    assert waiting.id  # the scheduled one is counted above, never run


async def test_metrics_carry_the_process_metrics_and_follow_the_scrapers_accept_header(
        dashboard: Dashboard, http) -> None:
    async with http.get(dashboard.url + "/metrics", headers=dashboard.auth) as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    assert (_sample(text, "process_resident_memory_bytes") or 0) > 0
    assert _sample(text, "process_cpu_seconds_total") is not None
    assert "python_info{" in text and "# TYPE jobengine_jobs gauge" in text
    openmetrics = {**dashboard.auth, "Accept": "application/openmetrics-text; version=1.0.0"}
    async with http.get(dashboard.url + "/metrics", headers=openmetrics) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_metrics_show_attempts_running_now_and_the_queue_latency_of_finished_ones(
        dashboard: Dashboard, http) -> None:
    engine = dashboard.engine

    async def scrape() -> str:
        async with http.get(dashboard.url + "/metrics", headers=dashboard.auth) as response:
            assert response.status == 200
            return await response.text()

    held = await engine.enqueue("gated", {"gate": "metrics-running"})

    async def holding() -> str | None:
        text = await scrape()
        return text if _sample(text, "jobengine_jobs_running", queue="default") == 1 else None

    text = await wait_until(holding, what="jobengine_jobs_running{queue=default} 1 while the gated job runs")
    assert _sample(text, "jobengine_jobs_running", queue="mail") == 0
    dashboard.controls.gate("metrics-running").set()

    async def released() -> str | None:
        text = await scrape()
        done = _sample(text, "jobengine_job_executions_total", kind="gated", queue="default", state="completed")
        return text if done == 1 and _sample(text, "jobengine_jobs_running", queue="default") == 0 else None

    text = await wait_until(released, what=f"job {held.id} completed and no longer counted as running")
    assert _sample(text, "jobengine_job_queue_latency_seconds_count", queue="default") == 1
    assert (_sample(text, "jobengine_job_queue_latency_seconds_sum", queue="default") or -1) >= 0
