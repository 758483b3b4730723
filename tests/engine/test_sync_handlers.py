"""Sync handlers (plain ``def``) against real Postgres: they run in their queue's thread pool,
never more at once than the queue's concurrency, with the same outcomes, timeouts and context
as async handlers; a timed-out thread runs on as a straggler that /metrics counts."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.from_thread
import pytest

from engine.core.job import Job
from engine.core.outcomes import Cancel, Snooze
from engine.core.registry import Registry
from engine.queues.threads import ThreadPools
from engine.testing import perform_job, wait_for_job
from engine.web.api import thread_gauges
from engine.web.metrics import Metrics
from tests.support.waiting import wait_until

FAST_RETRY = {"type": "fixed", "delay": 60_000}


class Gate:
    """Counts threads inside a handler and holds them until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.threads: set[int] = set()
        self.release = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
            self.threads.add(threading.get_ident())

    def leave(self) -> None:
        with self.lock:
            self.current -= 1


def sync_registry(gate: Gate) -> Registry:
    registry = Registry()

    @registry.handler("blocking", queue="sync")
    def blocking(job: Job) -> Any:
        gate.enter()
        try:
            gate.release.wait(timeout=30)
            return {"n": job.args["n"]}
        finally:
            gate.leave()

    @registry.handler("outcome", queue="sync")
    def outcome(job: Job, ctx: Any) -> Any:
        ctx.logger.info("sync handler ran", thread=threading.get_ident())
        match job.args["action"]:
            case "raise":
                raise ValueError(f"bad value {job.args.get('value')}")
            case "snooze":
                return Snooze(3600) if job.attempt == 1 and not job.meta.get("snoozed") else "late"
            case "cancel":
                return Cancel("not wanted")
        return {"thread": threading.get_ident(), "kind": job.kind}

    return registry


def test_a_plain_def_registers_as_a_sync_handler_and_a_generator_is_refused() -> None:
    registry = Registry()

    @registry.handler("plain")
    def plain(job: Job) -> None:
        return None

    assert registry.get("plain").sync and not registry.get("plain").takes_context
    with pytest.raises(TypeError, match="'gen' must be a function"):
        @registry.handler("gen")
        def gen(job: Job) -> Any:
            yield job


async def test_sync_handlers_never_run_more_threads_than_the_queue_concurrency(start_engine) -> None:
    gate = Gate()
    engine = await start_engine(sync_registry(gate), queues={"sync": {"concurrency": 2}})
    jobs = [await engine.enqueue("blocking", {"n": n}) for n in range(6)]
    await wait_until(lambda: gate.current == 2, what="two sync handlers running")
    assert engine.executor.threads.busy("sync") == 2
    gate.release.set()
    done = [await wait_for_job(engine, job.id) for job in jobs]
    assert [job.state for job in done] == ["completed"] * 6
    assert [job.result for job in done] == [{"n": n} for n in range(6)]
    assert gate.peak == 2
    assert threading.get_ident() not in gate.threads


async def test_scaling_a_queue_resizes_its_thread_pool(start_engine) -> None:
    engine = await start_engine(sync_registry(Gate()), queues={"sync": {"concurrency": 2}})
    assert engine.executor.threads.limiter("sync").total_tokens == 2
    await engine.scale("sync", 5)
    assert engine.executor.threads.limiter("sync").total_tokens == 5


async def test_the_pool_bounds_threads_by_itself() -> None:
    pools, gate = ThreadPools(), Gate()
    pools.resize("q", 3)

    def work() -> None:
        gate.enter()
        try:
            gate.release.wait(timeout=30)
        finally:
            gate.leave()

    async with anyio.create_task_group() as group:
        for _ in range(7):
            group.start_soon(pools.run, "q", work)
        await wait_until(lambda: gate.current == 3)
        assert pools.busy("q") == 3
        gate.release.set()
    assert gate.peak == 3 and pools.stragglers == 0


async def test_sync_outcomes_match_async_ones(start_engine) -> None:
    engine = await start_engine(sync_registry(Gate()), queues={"sync": {"concurrency": 4}})
    ok = await engine.enqueue("outcome", {"action": "ok"})
    failed = await engine.enqueue("outcome", {"action": "raise", "value": 7}, backoff=FAST_RETRY)
    snoozed = await engine.enqueue("outcome", {"action": "snooze"})
    cancelled = await engine.enqueue("outcome", {"action": "cancel"})

    completed = await wait_for_job(engine, ok.id)
    assert completed.state == "completed" and completed.result["kind"] == "outcome"
    assert completed.result["thread"] != threading.get_ident()
    retried = await wait_for_job(engine, failed.id, states={"retryable"})
    assert retried.errors[-1]["error"] == "ValueError: bad value 7"
    assert "Traceback" in retried.errors[-1]["traceback"] and "def outcome" not in retried.errors[-1]["error"]
    assert (await wait_for_job(engine, snoozed.id, states={"scheduled"})).attempt == 0  # not spent
    gone = await wait_for_job(engine, cancelled.id)
    assert gone.state == "cancelled" and gone.errors[-1]["error"] == "not wanted"


async def test_a_timed_out_sync_handler_frees_its_slot_and_is_retried_while_its_thread_runs_on(
        start_engine) -> None:
    gate = Gate()
    engine = await start_engine(sync_registry(gate), queues={"sync": {"concurrency": 1}})
    threads = engine.executor.threads
    stuck = await engine.enqueue("blocking", {"n": 1}, timeout=0.3, backoff=FAST_RETRY)
    retried = await wait_for_job(engine, stuck.id, states={"retryable"})
    assert retried.errors[-1]["error"] == "TimeoutError: job exceeded its timeout of 0.3s"
    assert threads.stragglers == 1 and threads.abandoned == 1 and gate.current == 1

    # The one slot is free again: the next sync job runs though the straggler still blocks.
    after = await engine.enqueue("outcome", {"action": "ok"})
    assert (await wait_for_job(engine, after.id)).state == "completed"
    text = Metrics().render(thread_gauges(threads))
    assert "jobengine_sync_stragglers 1" in text and "jobengine_sync_abandoned 1" in text

    gate.release.set()
    await wait_until(lambda: threads.stragglers == 0, what="the straggler returned")
    assert threads.abandoned == 1 and (await engine.get(stuck.id)).state == "retryable"  # late value dropped


async def test_perform_job_runs_a_sync_handler_through_the_executor() -> None:
    registry = sync_registry(Gate())
    result = await perform_job("outcome", {"action": "ok"}, registry=registry)
    assert result["kind"] == "outcome" and result["thread"] != threading.get_ident()
    with pytest.raises(ValueError, match="bad value 3"):
        await perform_job("outcome", {"action": "raise", "value": 3}, registry=registry)


@asynccontextmanager
async def shared_client(config: Any) -> AsyncIterator[dict[str, Any]]:
    yield {"built_on_loop": threading.get_ident()}


async def test_a_sync_handler_reaches_async_resources_through_anyio_from_thread() -> None:
    registry = Registry()

    @registry.handler("with-resource")
    def with_resource(job: Job, ctx: Any) -> dict[str, Any]:
        client = anyio.from_thread.run(ctx.resources.get, shared_client)
        return {"loop": client["built_on_loop"], "thread": threading.get_ident()}

    result = await perform_job("with-resource", {}, registry=registry)
    assert result["loop"] == threading.get_ident() != result["thread"]
