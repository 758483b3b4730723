"""The testing helpers users get: perform_job, assert_enqueued/refute_enqueued, drain."""

from __future__ import annotations

import pytest

from engine import Cancel, EnqueueError, Snooze
from engine.testing import assert_enqueued, drain, perform_job, refute_enqueued
from tests.support.scripted import Recorder, scripted_registry


async def test_perform_job_runs_through_the_real_executor(recorder: Recorder) -> None:
    registry = scripted_registry(recorder)
    assert await perform_job("scripted", {"result": {"n": "{{n}}"}}, vars={"n": 7}, registry=registry) == {"n": 7}
    snoozing = {"action": "snooze", "snooze": 5, "snooze_times": 99}
    assert await perform_job("scripted", snoozing, registry=registry) == Snooze(5)
    assert isinstance(await perform_job("scripted", {"action": "cancel"}, registry=registry), Cancel)
    with pytest.raises(RuntimeError, match="boom"):
        await perform_job("scripted", {"action": "raise", "message": "boom"}, registry=registry)


async def test_perform_job_validates_like_enqueue(recorder: Recorder) -> None:
    with pytest.raises(EnqueueError, match="no handler registered"):
        await perform_job("nope", {}, registry=scripted_registry(recorder))


async def test_assert_refute_and_drain(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    await engine.enqueue("scripted", {"to": "a@example.com", "n": 1})
    await engine.enqueue("scripted", {"action": "raise"}, max_attempts=1)
    await engine.enqueue("scripted", {"later": True}, delay=3600)
    found = await assert_enqueued(engine, kind="scripted", args={"to": "a@example.com"})
    assert found.args["n"] == 1
    await refute_enqueued(engine, kind="scripted", args={"to": "b@example.com"})
    with pytest.raises(AssertionError, match="no job enqueued"):
        await assert_enqueued(engine, kind="scripted", args={"to": "b@example.com"})
    assert await drain(engine, "default") == {"completed": 1, "discarded": 1}
    assert await drain(engine, "default", with_scheduled=True) == {"completed": 1}
