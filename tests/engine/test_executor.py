"""Outcomes of an attempt against real Postgres: completed, retried with backoff, discarded,
snoozed, cancelled, timed out; errors kept with tracebacks."""

from __future__ import annotations

import pytest

from engine.core import backoff
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}}
FAST_RETRY = {"type": "fixed", "delay": 0}


async def test_raise_retries_then_discards_after_max_attempts(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"action": "raise", "message": "boom"}, max_attempts=3,
                               backoff=FAST_RETRY)
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded"
    assert recorder.attempts[job.id] == [1, 2, 3]
    assert [e["attempt"] for e in done.errors] == [1, 2, 3]
    assert all(e["error"] == "RuntimeError: boom" for e in done.errors)
    assert "Traceback" in done.errors[-1]["traceback"] and "scripted failure" not in done.errors[-1]["error"]


async def test_failed_attempt_is_retryable_with_backoff_in_the_future(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"action": "raise"}, backoff={"type": "fixed", "delay": 60_000})
    retried = await wait_for_job(engine, job.id, states={"retryable"})
    wait = (retried.scheduled_at - retried.attempted_at).total_seconds()
    assert 59 < wait < 61
    assert retried.attempt == 1 and len(retried.errors) == 1


def test_default_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    low = [backoff.exponential(n, rng=lambda: 0.0) for n in range(1, 6)]
    high = [backoff.exponential(n, rng=lambda: 1.0) for n in range(1, 6)]
    assert low == [4.0, 8.0, 16.0, 32.0, 64.0]
    assert high == pytest.approx([6.0, 12.0, 24.0, 48.0, 96.0])
    samples = {round(backoff.exponential(3), 6) for _ in range(50)}
    assert len(samples) > 40 and all(16.0 <= s <= 24.0 for s in samples)
    assert backoff.exponential(40, rng=lambda: 0.5) == backoff.DEFAULT_CAP


def test_document_backoff_fixed_and_exponential() -> None:
    assert backoff.from_document({"type": "fixed", "delay": 1500})(7) == 1.5
    assert 0.8 <= backoff.from_document({"type": "exponential", "delay": 1000})(1) <= 1.2
    with pytest.raises(ValueError, match=r"backoff\.type"):
        backoff.from_document({"type": "linear"})


async def test_snooze_reschedules_without_spending_an_attempt(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"action": "snooze", "snooze": 0.2, "snooze_times": 2}, max_attempts=1)
    done = await wait_for_job(engine, job.id)
    assert done.state == "completed"
    assert recorder.runs[job.id] == 3
    assert recorder.attempts[job.id] == [1, 1, 1]
    assert done.attempt == 1


@pytest.mark.parametrize(("action", "state"), [("cancel", "cancelled"), ("discard", "discarded"),
                                                ("permanent", "discarded")])
async def test_cancel_discard_and_permanent_errors_end_the_job_at_once(
    start_engine, recorder: Recorder, action: str, state: str
) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"action": action, "message": "stop here"}, max_attempts=5)
    done = await wait_for_job(engine, job.id)
    assert done.state == state
    assert recorder.runs[job.id] == 1
    assert "stop here" in done.errors[-1]["error"]


async def test_a_non_json_return_value_is_an_error_not_a_success(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"action": "bad_return"}, max_attempts=1)
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded"
    assert "not JSON" in done.errors[0]["error"]


async def test_timeout_cancels_the_handler_and_frees_the_slot(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 1}})
    slow = await engine.enqueue("scripted", {"sleep": 30}, timeout=0.3, max_attempts=1)
    quick = await engine.enqueue("scripted", {})
    done = await wait_for_job(engine, slow.id, timeout=5)
    assert done.state == "discarded"
    assert "exceeded its timeout of 0.3s" in done.errors[0]["error"]
    assert slow.id in recorder.cancelled
    assert (await wait_for_job(engine, quick.id, timeout=5)).state == "completed"


async def test_secret_values_never_reach_results_or_errors(start_engine, recorder: Recorder, monkeypatch) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", "tok-123456789")
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, secrets=["TEST_API_TOKEN"])
    leak = await engine.enqueue("scripted", {"action": "raise", "message": "bad token {{TEST_API_TOKEN}}"},
                                max_attempts=1)
    ok = await engine.enqueue("scripted", {"result": {"echo": "{{secrets.TEST_API_TOKEN}}"}})
    assert (await wait_for_job(engine, leak.id)).errors[0]["error"] == "RuntimeError: bad token ***"
    assert (await wait_for_job(engine, ok.id)).result == {"echo": "***"}
    assert recorder.runs[ok.id] == 1


async def test_unresolved_placeholder_discards_before_the_handler_runs(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"result": "{{missingName}}"})
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded"
    assert "missingName" in done.errors[0]["error"]
    assert job.id not in recorder.started


async def test_stale_ack_after_a_cancel_changes_nothing(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    job = await engine.enqueue("scripted", {"sleep": 0.5})
    await wait_until(lambda: job.id in recorder.started)
    await engine.store.cancel(job.id, "operator")  # row cancelled; the handler is not told
    await wait_until(lambda: job.id in recorder.finished)
    await engine.acker.wait_idle()
    assert (await engine.get(job.id)).state == "cancelled"
