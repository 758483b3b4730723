"""Producers: concurrency limits, priority order, pause/resume/scale, wake-ups."""

from __future__ import annotations

from typing import Any

import anyio

from engine import JobSpec
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until


async def test_concurrency_limit_is_never_exceeded(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 4}})
    await engine.enqueue_many([JobSpec(kind="scripted", args={"sleep": 0.05}) for _ in range(60)])
    await wait_until(lambda: len(recorder.finished) == 60, timeout=20)
    assert recorder.peak == 4


async def test_queues_have_separate_limits(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder),
                                queues={"default": {"concurrency": 2}, "media": {"concurrency": 3}})
    await engine.enqueue_many([JobSpec(kind="scripted", args={"sleep": 0.3}, queue=q)
                               for q in ("default", "media") for _ in range(3)])
    await wait_until(lambda: recorder.peak == 5, timeout=5)
    await wait_until(lambda: len(recorder.finished) == 6, timeout=10)
    assert recorder.peak == 5


async def test_higher_priority_runs_first(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))  # insert-only: queue everything first
    jobs = await engine.enqueue_many([JobSpec(kind="scripted", args={"p": p}, priority=p)
                                      for p in (0, 5, -3, 10, 1)])
    worker = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 1}})
    await wait_until(lambda: len(recorder.finished) == 5)
    by_id = {job.id: job.args["p"] for job in jobs}
    assert [by_id[i] for i in recorder.started] == [10, 5, 1, 0, -3]
    assert worker.processing


async def test_equal_priority_runs_in_insertion_order(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    jobs = await engine.enqueue_many([JobSpec(kind="scripted", args={"n": n}) for n in range(10)])
    await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 1}})
    await wait_until(lambda: len(recorder.finished) == 10)
    assert recorder.started == [job.id for job in jobs]


async def test_paused_queue_runs_nothing_until_resumed(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    await engine.pause("default")
    job = await engine.enqueue("scripted", {})
    with anyio.move_on_after(1.0):
        await wait_for_job(engine, job.id, timeout=1.0)
    assert (await engine.get(job.id)).state == "available"
    assert recorder.started == []
    await engine.resume("default")
    assert (await wait_for_job(engine, job.id)).state == "completed"


async def test_pause_applies_to_every_node_and_survives_restart(start_engine, recorder: Recorder) -> None:
    first = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    await first.pause("default")
    second = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}})
    assert second.producers["default"].paused
    await first.resume("default")
    await wait_until(lambda: not second.producers["default"].paused, timeout=5)


async def test_scale_changes_concurrency_on_every_node(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 1}})
    other = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 1}})
    await engine.scale("default", 3)
    await wait_until(lambda: other.producers["default"].limit == 3, timeout=5)
    await engine.enqueue_many([JobSpec(kind="scripted", args={"sleep": 0.3}) for _ in range(12)])
    await wait_until(lambda: len(recorder.finished) == 12, timeout=10)
    assert recorder.peak == 6


async def test_insert_wakes_an_idle_producer_without_polling(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                poll_interval=30)
    await wait_until(lambda: engine.notifier.connected)
    client = await start_engine(scripted_registry(recorder))
    job = await client.enqueue("scripted", {})
    done = await wait_for_job(engine, job.id, timeout=3)
    assert (done.attempted_at - done.inserted_at).total_seconds() < 1.0


async def test_insert_notified_while_a_claim_is_in_flight_is_not_lost(start_engine, recorder: Recorder) -> None:
    # The claim's snapshot cannot see a job inserted after it began; the insert's
    # notification then lands mid-claim and must still lead to another look.
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                poll_interval=30)
    await wait_until(lambda: engine.notifier.connected)
    producer = engine.producers["default"]
    real_fetch = engine.store.fetch
    late: list[int] = []

    async def fetch_racing_an_insert(queue: str, limit: int, node: str, **options: Any):
        claimed = await real_fetch(queue, limit, node, **options)
        if not late:
            job = await engine.enqueue("scripted", {})
            late.append(job.id)
            await wait_until(lambda: producer._signalled, timeout=3)  # its notification arrived mid-claim
        return claimed

    engine.store.fetch = fetch_racing_an_insert  # type: ignore[method-assign]
    producer.notify()
    await wait_until(lambda: bool(late), timeout=3)
    done = await wait_for_job(engine, late[0], timeout=3)  # well before the 30 s poll
    assert done.state == "completed"
