"""Cron wired into the Engine facade: runtime entries through the API fire as ordinary jobs."""

from __future__ import annotations

import pytest

from engine import Engine
from engine.cron.schedule import CronConfigError
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until


async def test_runtime_cron_entry_fires_every_second_and_can_be_disabled(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    await engine.cron_add("every-second", "* * * * * *", {"jobType": "scripted", "data": {"result": "tick"}})
    await wait_until(lambda: len(recorder.finished) >= 2, timeout=10)
    jobs = await engine.list_jobs(tag="cron:every-second")
    slots = [job.meta["cron_slot"] for job in jobs]
    assert len(slots) == len(set(slots)), "each slot fires once"
    assert await engine.cron_disable("every-second")
    [status] = [s for s in await engine.cron_list() if s.name == "every-second"]
    assert not status.enabled and status.last_job_id is not None


async def test_config_cron_entry_with_bad_schedule_fails_at_construction(make_config, recorder: Recorder) -> None:
    config = make_config(cron=[{"name": "broken", "schedule": "61 * * * *", "job": {"jobType": "scripted"}}])
    with pytest.raises(CronConfigError, match="broken"):
        Engine(config=config, registry=scripted_registry(recorder))
