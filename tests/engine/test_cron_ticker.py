"""The cron ticker and the cron store against a real Postgres, with a clock moved by hand."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio

from engine.cli.cron import add_cron_arguments, cron_store, list_cron_entries, run_cron_command
from engine.core.acks import Ack
from engine.core.job import Job
from engine.core.registry import Registry
from engine.core.secrets import Secrets
from engine.cron.schedule import MAX_SLOTS_PER_TICK, CronConfigError, CronEntry
from engine.cron.store import CronStore
from engine.cron.ticker import CronTicker
from engine.db.store import JobStore
from engine.insert.inserter import Inserter
from tests.support.waiting import wait_until

KIND = "cron.probe"
DOC = {"jobType": KIND, "data": {"report": "daily"}}
T0 = datetime(2025, 6, 2, 11, 50, tzinfo=UTC)  # a Monday


def at(hour: int, minute: int = 0, second: float = 0) -> datetime:
    return datetime(2025, 6, 2, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


class FakeClock:
    """A clock the test moves; sleeping jumps straight to the wake time, up to `stop_at`."""

    def __init__(self, now: datetime, stop_at: datetime | None = None) -> None:
        self.current = now
        self.stop_at = stop_at
        self.sleeps: list[datetime] = []

    def now(self) -> datetime:
        return self.current

    async def sleep_until(self, when: datetime) -> None:
        self.sleeps.append(when)
        if self.stop_at is not None and when > self.stop_at:
            await anyio.sleep_forever()
        self.current = max(self.current, when)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def inserter() -> Inserter:
    registry = Registry()

    @registry.handler(KIND, queue="reports")
    async def probe(job: Job) -> None:
        return None

    return Inserter(registry, Secrets({}))


@pytest_asyncio.fixture
async def open_queue(pg_url: str, schema: str) -> AsyncIterator[Callable[[], Any]]:
    """``await open_queue()``: a migrated JobStore on this test's schema (closed afterwards)."""
    queues: list[JobStore] = []

    async def open_one() -> JobStore:
        queue = JobStore(pg_url, schema=schema, pool_size=3)
        await queue.open()
        await queue.migrate()
        queues.append(queue)
        return queue

    yield open_one
    for queue in queues:
        await queue.close()


@pytest_asyncio.fixture
async def store(open_queue: Callable[[], Any], inserter: Inserter) -> CronStore:
    return CronStore(await open_queue(), inserter)


def entry(name: str = "report", schedule: str = "* * * * *", **options: Any) -> CronEntry:
    return CronEntry(name, schedule, options.pop("timezone", "UTC"), options.pop("job", DOC), **options)


async def cron_jobs(queue: JobStore) -> list[tuple[str, str]]:
    """(entry, slot) of every job the ticker inserted, oldest first."""
    jobs = await queue.dashboard_job_page(limit=1000)
    return sorted((job.meta["cron"], job.meta["cron_slot"]) for job in jobs)


# --- inserting ------------------------------------------------------------------------------

async def test_a_due_slot_inserts_an_ordinary_job_naming_its_entry_and_slot(store: CronStore) -> None:
    await store.add(entry(schedule="0 12 * * *"), now=T0)
    ticker = CronTicker(store)
    assert (await ticker.tick(at(11, 59, 59))).inserted == []
    (job,) = (await ticker.tick(at(12, 0, 0.4))).inserted
    assert (job.kind, job.queue, job.args, job.state) == (KIND, "reports", DOC["data"], "available")
    assert job.meta["cron"] == "report" and job.meta["cron_slot"] == "2025-06-02T12:00:00+00:00"
    assert "cron:report" in job.tags
    (status,) = await store.list(now=at(12, 0, 1))
    assert (status.last_job_id, status.last_job_state, status.next_run) == (job.id, "available", at(12) + timedelta(1))


async def test_two_tickers_ticking_the_same_minutes_insert_each_slot_once(
    open_queue: Callable[[], Any], inserter: Inserter
) -> None:
    first, second = CronStore(await open_queue(), inserter), CronStore(await open_queue(), inserter)
    for index in range(10):
        await first.add(entry(f"every-minute-{index}"), now=T0)
    tickers = [CronTicker(first), CronTicker(second)]
    for minute in range(5):
        now = at(12, minute, 1)
        async with anyio.create_task_group() as group:
            for ticker in tickers:
                group.start_soon(ticker.tick, now)
    jobs = await cron_jobs(first.store)
    assert len(jobs) == 50 and len(set(jobs)) == 50


async def test_the_clock_stepping_backwards_never_reinserts_a_slot(store: CronStore) -> None:
    await store.add(entry(catch_up=86400), now=T0)
    ticker = CronTicker(store)
    assert len((await ticker.tick(at(12, 0, 10))).inserted) == 10  # 11:51..12:00 caught up
    for now in (at(11, 30), at(11, 58, 30), at(12, 0, 10), at(12, 0, 50)):
        assert (await ticker.tick(now)).inserted == []
    # A second process whose clock is an hour behind inserts nothing either.
    assert (await CronTicker(CronStore(store.store, store.inserter)).tick(at(11, 0, 5))).inserted == []
    # Even a ticker with a stale view of the entry cannot claim an old slot: the database refuses.
    def build(document: dict[str, Any]) -> dict[str, Any]:
        return store.job_row("report", document, at(11, 55))

    assert await store.store.cron_fire("report", at(11, 55), "* * * * *", "UTC", build) == ("taken", None)
    (job,) = (await ticker.tick(at(12, 1, 5))).inserted
    assert job.meta["cron_slot"] == "2025-06-02T12:01:00+00:00"
    assert len(await cron_jobs(store.store)) == 11


# --- missed runs ------------------------------------------------------------------------------

async def test_slots_missed_while_no_engine_ran_are_not_backfilled_by_default(store: CronStore) -> None:
    await store.add(entry(schedule="*/5 * * * *"), now=T0)
    await CronTicker(store).tick(at(12, 0, 2))
    # Every engine down from 12:00 to 15:01:30; a fresh one starts: only the on-time slot.
    restarted = CronTicker(CronStore(store.store, store.inserter))
    assert (await restarted.tick(at(15, 1, 30))).inserted == []
    assert [job.meta["cron_slot"] for job in (await restarted.tick(at(15, 5, 20))).inserted] == [
        "2025-06-02T15:05:00+00:00"]
    assert [slot for _, slot in await cron_jobs(store.store)] == [
        "2025-06-02T12:00:00+00:00", "2025-06-02T15:05:00+00:00"]


async def test_a_slot_seen_late_within_the_grace_period_still_fires(store: CronStore) -> None:
    await store.add(entry(schedule="0 12 * * *"), now=T0)
    (job,) = (await CronTicker(store).tick(at(12, 0, 45))).inserted  # e.g. the database was slow
    assert job.meta["cron_slot"] == "2025-06-02T12:00:00+00:00"


async def test_catch_up_inserts_missed_slots_within_its_window_and_no_more(store: CronStore) -> None:
    await store.add(entry("windowed", "*/5 * * * *", catch_up=1800), now=at(8))
    await store.add(entry("capped", "* * * * *", catch_up=7 * 86400), now=at(8))
    await CronTicker(store).tick(at(9, 0, 1))
    report = await CronTicker(store).tick(at(12, 2))  # after three hours of downtime
    windowed = [job.meta["cron_slot"][11:16] for job in report.inserted if job.meta["cron"] == "windowed"]
    assert windowed == ["11:35", "11:40", "11:45", "11:50", "11:55", "12:00"]
    capped = [job.meta["cron_slot"] for job in report.inserted if job.meta["cron"] == "capped"]
    assert len(capped) == MAX_SLOTS_PER_TICK and capped[-1] == "2025-06-02T12:02:00+00:00"


async def test_a_newly_added_entry_does_not_fire_for_slots_before_it_existed(store: CronStore) -> None:
    await store.add(entry(schedule="0 12 * * *", catch_up=86400), now=at(12, 0, 30))
    assert (await CronTicker(store).tick(at(12, 0, 40))).inserted == []


# --- overlap ----------------------------------------------------------------------------------

async def test_overlap_skip_waits_for_the_previous_run_to_finish(store: CronStore) -> None:
    await store.add(entry("single", overlap="skip"), now=T0)
    await store.add(entry("parallel", overlap="allow"), now=T0)
    ticker = CronTicker(store)
    await ticker.tick(at(12, 0, 1))
    (running,) = [job for job in await store.store.fetch("reports", 10, "node-a") if job.meta["cron"] == "single"]
    report = await ticker.tick(at(12, 1, 1))
    assert report.skipped == [("single", at(12, 1))]
    assert [job.meta["cron"] for job in report.inserted] == ["parallel"]
    await store.store.finish([Ack(running.id, running.attempt, running.attempted_at, "completed")])
    assert sorted(job.meta["cron"] for job in (await ticker.tick(at(12, 2, 1))).inserted) == ["parallel", "single"]
    single = next(status for status in await store.list(now=at(12, 2, 2)) if status.name == "single")
    assert single.last_job_state == "available" and single.last_slot == at(12, 2)


# --- timezones through the database ---------------------------------------------------------------

async def test_one_am_in_seoul_fires_at_four_pm_utc_the_day_before(store: CronStore) -> None:
    await store.add(entry("daily-stats", "0 1 * * *", timezone="Asia/Seoul"), now=T0)
    (status,) = await store.list(now=T0)
    assert status.next_run == at(16) and status.next_run_local.isoformat() == "2025-06-03T01:00:00+09:00"
    (job,) = (await CronTicker(store).tick(at(16, 0, 2))).inserted
    assert job.meta["cron_slot"] == "2025-06-02T16:00:00+00:00"


async def test_spring_forward_slot_fires_once_at_three_am_new_york(store: CronStore) -> None:
    await store.add(entry("nightly", "30 2 * * *", timezone="America/New_York"),
                    now=datetime(2025, 3, 9, 6, tzinfo=UTC))
    ticker, fired = CronTicker(store), []
    for minute in range(0, 120, 1):  # 01:00 EST .. 04:00 EDT, a tick every minute
        now = datetime(2025, 3, 9, 6, 0, 1, tzinfo=UTC) + timedelta(minutes=minute)
        fired += [job.meta["cron_slot"] for job in (await ticker.tick(now)).inserted]
    assert fired == ["2025-03-09T07:00:00+00:00"]


# --- runtime management -------------------------------------------------------------------------

async def test_runtime_entries_can_be_added_changed_disabled_enabled_and_removed(store: CronStore) -> None:
    ticker = CronTicker(store)
    await store.add(entry("ping", "*/10 * * * *", catch_up=86400), now=T0)
    with pytest.raises(CronConfigError, match="'ping' already exists"):
        await store.add(entry("ping"), now=T0)
    assert await store.disable("ping", now=at(11, 55))
    assert (await ticker.tick(at(12, 30, 1))).inserted == []
    assert await store.enable("ping", now=at(12, 30, 30))  # nothing from the disabled time is caught up
    assert (await ticker.tick(at(12, 35))).inserted == []
    assert len((await ticker.tick(at(12, 40, 1))).inserted) == 1
    updated = await store.update("ping", schedule="0 13 * * *", timezone="Europe/Berlin", now=at(12, 41))
    assert updated.cron.next_slot(at(12, 41)) == at(11) + timedelta(days=1)
    (status,) = await store.list(now=at(12, 42))
    assert (status.schedule, status.timezone, status.source) == ("0 13 * * *", "Europe/Berlin", "runtime")
    assert status.next_run_local.isoformat() == "2025-06-03T13:00:00+02:00"
    assert await store.remove("ping") and not await store.remove("ping")
    assert await store.list(now=at(12, 42)) == []


async def test_invalid_runtime_entries_are_refused_naming_the_entry(store: CronStore) -> None:
    with pytest.raises(CronConfigError, match=r"cron entry 'typo': job: .*no-such-kind"):
        await store.add(entry("typo", job={"jobType": "no-such-kind"}))
    with pytest.raises(CronConfigError, match="cron entry 'bad-zone': unknown timezone"):
        await store.add(entry("bad-zone", timezone="Mars/Olympus"))
    await store.add(entry("ok"))
    with pytest.raises(CronConfigError, match="cron entry 'ok': invalid field"):
        await store.update("ok", schedule="0 0 L * *")
    assert [status.name for status in await store.list()] == ["ok"]


async def test_config_entries_are_written_at_start_and_operator_changes_survive_restarts(
    open_queue: Callable[[], Any], inserter: Inserter
) -> None:
    queue = await open_queue()
    declared = [entry("daily-stats", "0 1 * * *", timezone="Asia/Seoul")]
    await CronStore(queue, inserter, declared).sync_config(now=T0)
    assert await CronStore(queue, inserter, declared).disable("daily-stats", now=T0)
    # A restart with the same file keeps the operator's choice.
    assert await CronStore(queue, inserter, declared).sync_config(now=at(12)) == []
    (status,) = await CronStore(queue, inserter, declared).list(now=at(12))
    assert (status.source, status.enabled, status.in_config) == ("config", False, True)
    with pytest.raises(CronConfigError, match="declared in the config file"):
        await CronStore(queue, inserter, declared).remove("daily-stats")
    # Changing the entry in the file wins.
    changed = [entry("daily-stats", "0 2 * * *", timezone="Asia/Seoul")]
    assert await CronStore(queue, inserter, changed).sync_config(now=at(12)) == ["daily-stats"]
    (status,) = await CronStore(queue, inserter, changed).list(now=at(12))
    assert (status.schedule, status.enabled, status.next_run) == ("0 2 * * *", True, at(17))


async def test_a_config_entry_fires_only_on_engines_whose_config_declares_it(
    open_queue: Callable[[], Any], inserter: Inserter
) -> None:
    queue = await open_queue()
    declaring = CronStore(queue, inserter, [entry("from-file")])
    await declaring.sync_config(now=T0)
    other = CronStore(queue, inserter)
    await other.add(entry("runtime"), now=T0)
    assert [job.meta["cron"] for job in (await CronTicker(other).tick(at(12, 0, 1))).inserted] == ["runtime"]
    assert [job.meta["cron"] for job in (await CronTicker(declaring).tick(at(12, 0, 1))).inserted] == ["from-file"]
    (stale, _) = await other.list(now=at(12, 0, 2))
    assert (stale.name, stale.source, stale.in_config) == ("from-file", "config", False)


async def test_config_entries_not_yet_written_are_listed(store: CronStore) -> None:
    unsynced = CronStore(store.store, store.inserter, [entry("later", "0 9 * * 1")])
    (status,) = await unsynced.list(now=T0)
    assert (status.name, status.stored, status.next_run) == ("later", False, datetime(2025, 6, 9, 9, tzinfo=UTC))


# --- the run loop -------------------------------------------------------------------------------

async def test_run_wakes_at_each_slot_and_inserts_it_once(store: CronStore) -> None:
    await store.add(entry("fast", "*/20 * * * * *"), now=at(12, 0, 0.5))
    await store.add(entry("slow", "*/2 * * * *"), now=at(12, 0, 0.5))
    clock = FakeClock(at(12, 0, 0.5), stop_at=at(12, 5, 0.5))
    async with anyio.create_task_group() as group:
        group.start_soon(CronTicker(store, clock=clock).run)
        await wait_until(lambda: clock.sleeps and clock.sleeps[-1] > clock.stop_at)
        group.cancel_scope.cancel()
    jobs = await cron_jobs(store.store)
    assert [slot[11:19] for name, slot in jobs if name == "slow"] == ["12:02:00", "12:04:00"]
    assert len([name for name, _ in jobs if name == "fast"]) == 15  # 12:00:20 .. 12:05:00
    assert max(b - a for a, b in zip(clock.sleeps, clock.sleeps[1:], strict=False)) <= timedelta(seconds=21)


async def test_wake_picks_up_an_entry_added_elsewhere_at_once(store: CronStore) -> None:
    clock = FakeClock(at(12, 0, 0.5), stop_at=at(12, 0, 1))
    ticker = CronTicker(CronStore(store.store, store.inserter), clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(ticker.run)
        await wait_until(lambda: len(clock.sleeps) == 1)  # asleep until 12:01
        await store.add(entry("soon", "*/5 * * * * *"), now=at(12, 0, 0.5))
        clock.current = at(12, 0, 5)
        ticker.wake()
        await wait_until(lambda: cron_jobs(store.store))
        group.cancel_scope.cancel()
    assert await cron_jobs(store.store) == [("soon", "2025-06-02T12:00:05+00:00")]


# --- the CLI helpers on a real (insert-only) Engine ------------------------------------------------

async def test_cli_adds_lists_disables_and_removes_entries(start_engine: Callable[..., Any]) -> None:
    engine = await start_engine(cron=[{"name": "daily-stats", "schedule": "0 1 * * *", "timezone": "Asia/Seoul",
                                       "job": {"jobType": "log", "data": {"message": "stats"}}}])
    parser = argparse.ArgumentParser()
    add_cron_arguments(parser)

    async def cron(*argv: str) -> str:
        return (await run_cron_command(engine, parser.parse_args(argv)))[1]

    added = await cron("add", "ping", "--schedule", "*/5 * * * *", "--kind", "log",
                       "--job", '{"message": "ping"}', "--overlap", "skip", "--catch-up", "10m")
    assert added == "cron entry ping added"
    rows = {row["name"]: row for row in await list_cron_entries(engine)}
    assert rows["daily-stats"]["next_run"].endswith("T01:00:00+09:00")
    assert rows["daily-stats"]["next_run_utc"].endswith("T16:00:00+00:00")
    assert (rows["ping"]["source"], rows["ping"]["enabled"], rows["ping"]["last_state"]) == ("runtime", "yes", "-")
    assert await cron("disable", "ping") == "cron entry ping disabled"
    ran = await cron("run", "ping")  # a disabled entry can still be run by hand
    job = await engine.get(int(ran.rsplit(" ", 1)[1]))
    assert ran.startswith("cron entry ping enqueued as job ")
    assert job is not None and job.kind == "log" and job.args == {"message": "ping"} and "cron:ping" in job.tags
    assert await cron("update", "ping", "--schedule", "@hourly") == "cron entry ping updated"
    (ping,) = [status for status in await cron_store_of(engine).list() if status.name == "ping"]
    assert (ping.schedule, ping.enabled, ping.overlap, ping.catch_up) == ("@hourly", False, "skip", 600.0)
    assert await cron("remove", "ping") == "cron entry ping removed"
    with pytest.raises(ValueError, match="no cron entry 'ping'"):
        await cron("enable", "ping")
    with pytest.raises(ValueError, match="no cron entry 'ping'"):
        await cron("run", "ping")


def cron_store_of(engine: Any) -> CronStore:
    return cron_store(engine)
