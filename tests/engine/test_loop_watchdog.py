"""A handler that blocks the event loop: the watchdog thread logs the stall naming the job,
counts it in /metrics, and a job the lease fence stops because of it says why."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from engine.core.job import Job
from engine.core.registry import Registry
from engine.testing import wait_for_job
from engine.web import serve
from tests.support.waiting import wait_until

STALL_LOG = "event loop blocked: a handler or callback is not yielding; heartbeats and other jobs wait"


def _blocking_registry(blocked: list[int]) -> Registry:
    registry = Registry()

    @registry.handler("blocker")
    async def blocker(job: Job) -> Any:
        if not blocked:  # only its first run blocks, so the retried run completes
            blocked.append(job.id)
            time.sleep(2)  # noqa: ASYNC251 - the bug under test: a blocking call on the event loop
        await asyncio.sleep(job.args.get("then", 0))
        return {"ok": True}

    return registry


def _sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


async def test_a_handler_blocking_the_loop_is_logged_by_name_and_counted_in_metrics(start_engine) -> None:
    blocked: list[int] = []
    engine = await start_engine(_blocking_registry(blocked), queues={"default": {"concurrency": 2}},
                                dashboard={"token": "t" * 32})
    with capture_logs() as logs:
        job = await engine.enqueue("blocker", {})
        assert (await wait_for_job(engine, job.id, timeout=10)).state == "completed"
        supervisor = engine.supervisor
        await wait_until(lambda: supervisor.longest_stall_seconds >= 1.7, timeout=5)  # the probe ran at last
    stalls = [entry for entry in logs if entry["event"] == STALL_LOG]
    assert len(stalls) == 1, stalls  # once per stall, however long it lasts
    assert {"id": job.id, "kind": "blocker"} in stalls[0]["jobs"]
    assert supervisor.loop_stalls == 1 and supervisor.longest_stall_seconds < 5
    async with serve(engine, bind="127.0.0.1:0") as server, aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/metrics", headers={"Authorization": "Bearer " + "t" * 32})
        text = await response.text()
    assert re.search(r"^# TYPE jobengine_loop_stalls(_total)? counter$", text, re.MULTILINE)  # rate() works
    assert _sample(text, "jobengine_loop_stalls_total") == 1
    assert 1.7 <= (_sample(text, "jobengine_loop_longest_stall_seconds") or 0) < 5


async def test_a_job_stopped_by_the_fence_after_its_own_stall_says_the_loop_was_blocked(start_engine) -> None:
    blocked: list[int] = []
    # fence_after = 1.0 - 0.2 = 0.8 s: a 2 s block makes this node look dead to itself.
    engine = await start_engine(_blocking_registry(blocked), queues={"default": {"concurrency": 2}},
                                lifeline={"heartbeat_interval": 0.2, "rescue_after": 1.0})
    job = await engine.enqueue("blocker", {"then": 1.0})
    done = await wait_for_job(engine, job.id, timeout=15)
    assert (done.state, done.attempt) == ("completed", 1)  # stopped unspent, then run again
    reason = done.errors[0]["error"]
    assert "could not heartbeat" in reason
    assert re.search(rf"because the event loop was blocked for [12]\.\ds \(while job {job.id} \(blocker\) ran\)",
                     reason), reason


async def test_a_job_that_blocks_its_node_out_of_its_lease_on_every_run_is_discarded_after_max_rescues(
        start_engine) -> None:
    registry = Registry()
    runs: list[int] = []

    @registry.handler("hog")
    async def hog(job: Job) -> Any:
        runs.append(job.attempt)
        time.sleep(1.1)  # noqa: ASYNC251 - the bug under test: every run blocks the loop past the fence
        await asyncio.sleep(10)  # the fence cancels it here, at its first await after the thaw
        return {"ok": True}

    # fence_after = 1.0 - 0.2 = 0.8 s; each stop used to go back unspent, so it ran for ever.
    engine = await start_engine(registry, queues={"default": {"concurrency": 1}},
                                lifeline={"heartbeat_interval": 0.2, "rescue_after": 1.0, "max_rescues": 1,
                                          "stall_warning": 0.5})
    job = await engine.enqueue("hog", {}, max_attempts=5)
    done = await wait_for_job(engine, job.id, timeout=15)
    assert done.state == "discarded" and done.attempt == 1, done.errors  # the last stop spends its attempt
    assert len(runs) == 2  # stopped once and returned unspent, stopped again and discarded
    assert done.errors[0]["error"].endswith("returned to be retried")
    reason = done.errors[-1]["error"]
    assert reason.startswith("discarded: stopped again after 1 rescues (max_rescues); "
                             "the job seems to block its process"), reason
    assert "because the event loop was blocked for" in reason, reason
