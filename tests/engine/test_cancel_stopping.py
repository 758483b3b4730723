"""Cancelling an executing job: until its node confirms the handler stopped (or is declared
dead), retry, run-now and delete refuse it with a named error, so no second copy starts
beside the first."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from engine import JobStillStopping
from engine.core.job import Job
from engine.engine import Engine
from engine.testing import wait_for_job
from engine.web.server import serve
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

TOKEN = "operator-token-for-cancel-tests-0123456789"


async def _retried(engine: Engine, job_id: int) -> bool:
    try:
        return await engine.retry(job_id)
    except JobStillStopping:
        return False


def _stubborn_registry(recorder: Recorder, gate: anyio.Event) -> Any:
    """``stubborn``: ignores cancellation until ``gate`` is set (a handler that does not yield)."""
    registry = scripted_registry(recorder)

    @registry.handler("stubborn")
    async def stubborn(job: Job) -> Any:
        recorder.start(job)
        try:
            with anyio.CancelScope(shield=True):
                await gate.wait()
        finally:
            recorder.stop(job)
        return {"ran": job.attempt}

    return registry


async def test_a_cancelled_job_cannot_be_retried_or_deleted_until_its_handler_stopped(start_engine) -> None:
    recorder, gate = Recorder(), anyio.Event()
    engine = await start_engine(_stubborn_registry(recorder, gate), queues={"default": {"concurrency": 2}})
    job = await engine.enqueue("stubborn", {})
    await wait_until(lambda: recorder.runs[job.id] == 1)
    try:
        assert await engine.cancel(job.id)
        assert (await engine.get(job.id)).state == "cancelled"
        for action in (engine.retry, engine.delete):
            with pytest.raises(JobStillStopping, match=f"job {job.id} is cancelling: .* node {engine.node}"):
                await action(job.id)
        assert recorder.current == 1 and recorder.runs[job.id] == 1  # never a second copy
    finally:
        gate.set()  # the handler ends; its stale ack confirms the stop
    await wait_until(lambda: _retried(engine, job.id), timeout=10)
    done = await wait_for_job(engine, job.id, timeout=10)
    assert (done.state, recorder.runs[job.id], recorder.peak) == ("completed", 2, 1)


async def test_a_cancelled_job_whose_node_died_can_be_retried_once_that_node_is_declared_dead(
        start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                lifeline={"heartbeat_interval": 0.1, "rescue_after": 0.6})
    job = await engine.enqueue("scripted", {}, queue="elsewhere")
    await engine.store.heartbeat("doomed-node", ["elsewhere"], {})
    await engine.store.fetch("elsewhere", 1, "doomed-node")  # then it never heartbeats again
    assert await engine.cancel(job.id)
    with pytest.raises(JobStillStopping):
        await engine.retry(job.id)
    await wait_until(lambda: _retried(engine, job.id), timeout=10)
    assert (await engine.get(job.id)).state == "available"


async def test_the_api_answers_409_naming_the_node_while_a_cancelled_job_is_stopping(make_config) -> None:
    recorder, gate = Recorder(), anyio.Event()
    config = make_config(queues={"default": {"concurrency": 2}}, dashboard={"token": TOKEN})
    async with Engine(config=config, registry=_stubborn_registry(recorder, gate)) as engine, \
            serve(engine, bind="127.0.0.1:0") as server, aiohttp.ClientSession() as http:
        job = await engine.enqueue("stubborn", {})
        await wait_until(lambda: recorder.runs[job.id] == 1)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{server.url}/api/jobs/{job.id}/cancel", headers=headers) as response:
            assert response.status == 200
        try:
            for action in ("retry", "delete"):
                async with http.post(f"{server.url}/api/jobs/{job.id}/{action}", headers=headers) as response:
                    body = await response.json()
                    assert response.status == 409, body
                    assert f"job {job.id} is cancelling" in body["error"] and engine.node in body["error"]
        finally:
            gate.set()

        async def retried() -> bool:
            async with http.post(f"{server.url}/api/jobs/{job.id}/retry", headers=headers) as response:
                return response.status == 200
        await wait_until(retried, timeout=10)
        assert (await wait_for_job(engine, job.id, timeout=10)).state == "completed"
