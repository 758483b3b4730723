"""Definitions in Postgres: a `once` trigger fires exactly once across engines and restarts,
the counters count each finished job once and survive pruning, and cron entries are the
cron-triggered definitions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import pytest_asyncio

from engine.core.acks import Ack, ErrorEntry
from engine.core.job import Job
from engine.core.registry import Registry
from engine.core.secrets import Secrets
from engine.cron.definition_model import DefinitionInvalid
from engine.cron.definitions import DefinitionStore
from engine.cron.store import CronStore
from engine.cron.ticker import CronTicker
from engine.db.store import JobStore
from engine.engine import Engine
from engine.insert.inserter import Inserter
from engine.maintenance.pruner import Pruner
from tests.engine.test_cron_ticker import DOC, KIND, FakeClock, entry
from tests.support.waiting import wait_until

T0 = datetime(2025, 6, 2, 11, 50, tzinfo=UTC)


@pytest.fixture
def inserter() -> Inserter:
    registry = Registry()

    @registry.handler(KIND, queue="reports")
    async def probe(job: Job) -> None:
        return None

    return Inserter(registry, Secrets({}))


@pytest_asyncio.fixture
async def open_queue(pg_url: str, schema: str) -> AsyncIterator[Callable[[], Any]]:
    """``await open_queue()``: a migrated JobStore on this test's schema, one per node."""
    stores: list[JobStore] = []

    async def open_one() -> JobStore:
        store = JobStore(pg_url, schema=schema, pool_size=3)
        await store.open()
        await store.migrate()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


def once(name: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"name": name, "trigger": {"type": "once", "at": at.isoformat()}, "job": DOC, **fields}


async def test_a_once_definition_fires_once_when_two_tickers_race_and_after_restarts(
        open_queue: Any, inserter: Inserter) -> None:
    first, second = CronStore(await open_queue(), inserter), CronStore(await open_queue(), inserter)
    definitions = DefinitionStore(first)
    at = T0 + timedelta(minutes=3)
    await definitions.create(once("launch", at), actor="test", now=T0)
    tickers = [CronTicker(first, clock=FakeClock(T0)), CronTicker(second, clock=FakeClock(T0))]
    assert [len((await t.tick(T0 + timedelta(minutes=2))).inserted) for t in tickers] == [0, 0]
    assert tickers[0].next_wake(T0 + timedelta(minutes=2)) <= at + timedelta(seconds=1)

    reports = []

    async def tick(ticker: CronTicker) -> None:
        reports.append(await ticker.tick(at + timedelta(seconds=1)))

    async with anyio.create_task_group() as group:
        for ticker in tickers:
            group.start_soon(tick, ticker)
    inserted = [job for report in reports for job in report.inserted]
    assert len(inserted) == 1 and inserted[0].meta["definition"] == "launch"
    restarted = CronTicker(CronStore(await open_queue(), inserter), clock=FakeClock(at))
    assert (await restarted.tick(at + timedelta(days=1))).inserted == []
    assert [job.id for job in await definitions.runs("launch")] == [inserted[0].id]
    row = await definitions.get_json("launch", now=at + timedelta(days=1))
    assert row["nextRunAt"] is None and row["runs"]["total"] == 1
    # a fired once definition keeps its (past) instant through an edit, and does not fire again
    await definitions.replace("launch", {**row, "description": "launched"}, actor="test", now=at + timedelta(days=1))
    assert (await restarted.tick(at + timedelta(days=2))).inserted == []


async def test_a_missed_once_fires_late_but_not_after_a_disable_and_enable(open_queue: Any, inserter: Inserter) -> None:
    cron = CronStore(await open_queue(), inserter)
    definitions = DefinitionStore(cron)
    at = T0 + timedelta(minutes=1)
    await definitions.create(once("late", at), actor="test", now=T0)
    await definitions.create(once("paused", at), actor="test", now=T0)
    await definitions.set_enabled("paused", False, "test", now=T0)
    await definitions.set_enabled("paused", True, "test", now=at + timedelta(minutes=5))
    report = await CronTicker(cron).tick(at + timedelta(hours=2))  # no engine ran at `at`
    assert [job.meta["definition"] for job in report.inserted] == ["late"]


async def test_a_once_in_the_past_is_refused_naming_trigger_at(open_queue: Any, inserter: Inserter) -> None:
    definitions = DefinitionStore(CronStore(await open_queue(), inserter))
    with pytest.raises(DefinitionInvalid) as refused:
        await definitions.create(once("too-late", T0 - timedelta(seconds=1)), actor="test", now=T0)
    assert [e.field for e in refused.value.errors] == ["trigger.at"]
    assert await definitions.all() == []


async def test_cron_entries_are_the_cron_triggered_definitions(open_queue: Any, inserter: Inserter) -> None:
    cron = CronStore(await open_queue(), inserter)
    definitions = DefinitionStore(cron)
    await cron.add(entry("report"), now=T0)
    await definitions.create({"name": "by-hand", "job": DOC}, actor="test", now=T0)
    assert [row["name"] for row in await definitions.all()] == ["by-hand", "report"]
    assert [status.name for status in await cron.list(T0)] == ["report"]
    report = await CronTicker(cron).tick(T0 + timedelta(minutes=1, seconds=1))
    (job,) = report.inserted
    assert job.meta["cron"] == "report" and job.meta["definition"] == "report"
    got = await definitions.get_json("report", now=T0)
    assert got["source"] == "api" and got["trigger"]["schedule"] == "* * * * *"
    assert got["lastRun"]["jobId"] == job.id and got["runs"]["total"] == 1


async def test_two_tallies_count_every_finished_job_once(open_queue: Any, inserter: Inserter, make_config: Any) -> None:
    cron = CronStore(await open_queue(), inserter)
    definitions = DefinitionStore(cron)
    await definitions.create({"name": "counted", "job": DOC}, actor="test", now=T0)
    jobs = [await definitions.run("counted") for _ in range(30)]
    store = cron.store
    claimed = await store.fetch("reports", 100, "node-a")
    assert len(claimed) == 30
    await store.finish([Ack.completed(job, None) if job.id % 3 else
                        Ack.discarded(job, ErrorEntry.now(job.attempt, "error", "boom")) for job in claimed])
    failed = sum(1 for job in jobs if job.id % 3 == 0)
    expected = {"total": 30, "completed": 30 - failed, "failed": failed, "cancelled": 0}
    assert (await definitions.get_json("counted"))["runs"] == expected  # pending ones are counted live
    retention = make_config().retention.model_copy(update={"batch_size": 4})
    pruners = [Pruner(await open_queue(), retention), Pruner(await open_queue(), retention)]
    counted: list[int] = []

    async def tally(pruner: Pruner) -> None:
        counted.append(await pruner.tally_once())

    async with anyio.create_task_group() as group:
        for pruner in pruners:
            group.start_soon(tally, pruner)
    assert sum(counted) == 30 and await pruners[0].tally_once() == 0
    assert (await definitions.get_json("counted"))["runs"] == expected  # now stored, none pending


async def test_a_once_definition_fires_once_with_two_engines_running(make_config: Any) -> None:
    registry = Registry()
    ran: list[int] = []

    @registry.handler(KIND, queue="reports")
    async def probe(job: Job) -> None:
        ran.append(job.id)

    config = make_config(queues={"reports": {"concurrency": 2}}, poll_interval=0.2)
    engines = [Engine(config=config, registry=registry), Engine(config=config, registry=registry)]
    for engine in engines:
        await engine.start()
    try:
        definitions = engines[0].definitions
        assert definitions is not None
        at = datetime.now(UTC) + timedelta(seconds=1)
        await definitions.create(once("both-engines", at), actor="test")

        async def fired_and_done() -> bool:
            row = await definitions.get_json("both-engines")
            return row["lastRun"] is not None and row["lastRun"]["state"] == "completed"

        await wait_until(fired_and_done, timeout=15)
        for engine in engines:  # every engine ticks again well after the instant
            assert engine.cron is not None
            assert (await CronTicker(engine.cron).tick(at + timedelta(minutes=5))).inserted == []
        assert len(await definitions.runs("both-engines")) == 1 and len(ran) == 1
    finally:
        for engine in engines:
            await engine.stop(grace=1)


async def test_two_engines_fire_every_slot_of_200_definitions_once_while_they_are_edited(
        open_queue: Any, inserter: Inserter) -> None:
    """Five simulated minutes, two tickers ticking together every 15 s, while definitions are
    disabled and rescheduled: each (definition, slot) is inserted once, none while disabled."""
    nodes = [CronStore(await open_queue(), inserter), CronStore(await open_queue(), inserter)]
    definitions = DefinitionStore(nodes[0])
    every_minute = {"type": "cron", "schedule": "* * * * *", "timezone": "UTC"}
    names = [f"def-{n:03d}" for n in range(200)]
    for name in names:
        await definitions.create({"name": name, "trigger": every_minute, "job": DOC}, actor="test", now=T0)
    disabled, rescheduled = names[:20], names[20:40]
    tickers = [CronTicker(node, clock=FakeClock(T0)) for node in nodes]
    inserted: list[Job] = []

    async def tick_both(now: datetime) -> None:
        async def tick(ticker: CronTicker) -> None:
            inserted.extend((await ticker.tick(now)).inserted)

        async with anyio.create_task_group() as group:
            for ticker in tickers:
                group.start_soon(tick, ticker)

    for step in range(1, 21):  # 15 s steps: 11:50:15 .. 11:55:00
        now = T0 + timedelta(seconds=15 * step)
        if now == T0 + timedelta(minutes=2, seconds=15):
            for name in disabled:
                await definitions.set_enabled(name, False, "test", now=now)
            for name in rescheduled:
                row = await definitions.get_json(name, now=now)
                await definitions.replace(name, {**row, "trigger": {**every_minute, "schedule": "*/2 * * * *"}},
                                          actor="test", now=now)
        await tick_both(now)

    slots = [(job.meta["definition"], job.meta["cron_slot"][11:16]) for job in inserted]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    fired: dict[str, list[str]] = {}
    for name, slot in sorted(slots):
        fired.setdefault(name, []).append(slot)
    assert all(fired[name] == ["11:51", "11:52"] for name in disabled)
    assert all(fired[name] == ["11:51", "11:52", "11:54"] for name in rescheduled)
    assert all(fired[name] == ["11:51", "11:52", "11:53", "11:54", "11:55"] for name in names[40:])
    assert (await definitions.get_json("def-199"))["runs"]["total"] == 5


async def test_a_config_entry_takes_over_a_manual_definition_of_its_name(open_queue: Any, inserter: Inserter) -> None:
    store = await open_queue()
    definitions = DefinitionStore(CronStore(store, inserter))
    await definitions.create({"name": "report", "job": DOC}, actor="test", now=T0)
    config = CronStore(store, inserter, [entry("report", "0 3 * * *")])
    assert await config.sync_config(T0) == ["report"]
    got = await definitions.get_json("report", now=T0)
    assert got["source"] == "config" and got["trigger"]["schedule"] == "0 3 * * *"
