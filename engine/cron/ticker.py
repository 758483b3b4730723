"""The cron ticker: wakes at each slot (and at least every minute), inserts the due
slots' jobs, and sleeps again. It never runs handlers; producers run the jobs it inserts.

Every engine that processes queues runs one. They need no leader: each slot is claimed
in the database (see ``CRON_CLAIM_SLOT``), so whichever ticker claims it first inserts
the job and the others insert nothing.

Example::

    ticker = CronTicker(store)                    # real clock
    task_group.start_soon(ticker.run)
    report = await CronTicker(store, clock=FakeClock(t)).tick()   # in tests
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
import asyncpg
import structlog

from engine.core.job import Job
from engine.cron.schedule import ON_TIME_GRACE, CronConfigError, CronSchedule, due_slots
from engine.cron.store import CronStore
from engine.db.faults import log_fault
from engine.db.rows import InsertRow

__all__ = ["Clock", "CronTicker", "SystemClock", "TickReport"]

log = structlog.get_logger("jobengine.cron")
DB_ERRORS = (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError)
RETRY_AFTER = timedelta(seconds=5)
# Wake a hair after the slot so a timer firing early does not find it not yet due.
WAKE_LATE = timedelta(milliseconds=5)


class Clock(Protocol):
    """Where the ticker gets time from; tests pass one they move by hand."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at (or after) ``when``."""
        ...


class SystemClock:
    """The real clock. Sleeps are on the monotonic clock; the ticker re-reads the wall
    clock after each one, and never sleeps past the next minute, so a stepped clock is
    noticed within a minute."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await anyio.sleep(max(0.0, (when - self.now()).total_seconds()))


@dataclass(slots=True)
class TickReport:
    """What one tick did: jobs inserted, (entry, slot) pairs skipped or claimed elsewhere."""

    inserted: list[Job] = field(default_factory=list)
    skipped: list[tuple[str, datetime]] = field(default_factory=list)
    taken: list[tuple[str, datetime]] = field(default_factory=list)


class CronTicker:
    """Inserts the jobs of due cron slots; see docs/cron.md for the policies.

    Example::

        ticker = CronTicker(CronStore(queue, inserter, entries), clock=SystemClock())
        await ticker.run()      # until cancelled
    """

    def __init__(self, cron: CronStore, *, clock: Clock | None = None, grace: float = ON_TIME_GRACE) -> None:
        self.cron = cron
        self.clock: Clock = clock or SystemClock()
        self.grace = grace
        self._schedules: dict[tuple[str, str], CronSchedule] = {}
        self._active: list[CronSchedule] = []
        self._next_once: datetime | None = None  # the soonest once definition still to fire
        self._sleeping: anyio.CancelScope | None = None
        self._wake_pending = False
        self._reported: dict[str, str] = {}  # entry -> last error logged, to log each error once

    def wake(self) -> None:
        """Reload entries and tick now (after a runtime change)."""
        self._wake_pending = True
        if self._sleeping is not None:
            self._sleeping.cancel()

    async def run(self) -> None:
        """Write the config's entries, then tick at every slot until cancelled."""
        while True:
            try:
                await self.cron.sync_config(self.clock.now())
                break
            except DB_ERRORS as exc:
                log.warning("cron: cannot write config entries; retrying", error=str(exc))
                await self._sleep(self.clock.now() + RETRY_AFTER)
        while True:
            now = self.clock.now()
            try:
                await self.tick(now)
                wake_at = self.next_wake(now)
            except Exception as exc:  # a bug here must not take the engine's queues down with it
                log_fault(log, "cron: tick failed; retrying", exc)
                wake_at = now + RETRY_AFTER
            await self._sleep(wake_at)

    async def _sleep(self, until: datetime) -> None:
        if self._wake_pending:  # a change arrived while ticking: tick again at once
            self._wake_pending = False
            return
        with anyio.CancelScope() as scope:
            self._sleeping = scope
            await self.clock.sleep_until(until)
        self._sleeping = None
        self._wake_pending = False

    def next_wake(self, now: datetime) -> datetime:
        """The next slot of any active entry, but no later than the next minute boundary
        (entries are reloaded then: another process may have added one)."""
        wake_at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for schedule in self._active:
            wake_at = min(wake_at, schedule.next_slot(now))
        if self._next_once is not None and self._next_once > now:
            wake_at = min(wake_at, self._next_once)
        return wake_at + WAKE_LATE

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Insert the jobs of every slot due at ``now`` (default: the clock's now)."""
        now = self.clock.now() if now is None else now
        report = TickReport()
        active: list[CronSchedule] = []
        rows = await self.cron.store.cron_list(enabled_only=True)
        in_use = {(row["schedule"], row["timezone"]) for row in rows}
        self._schedules = {key: value for key, value in self._schedules.items() if key in in_use}
        for row in rows:
            if row["source"] == "config" and row["name"] not in self.cron.config_names:
                continue  # a config entry fires only on engines whose config declares it
            schedule = self._schedule(row)
            if schedule is None:
                continue
            active.append(schedule)
            for slot in due_slots(schedule, now, last_slot=row["last_slot"], active_since=row["active_since"],
                                  catch_up=row["catch_up"], grace=self.grace):
                await self._fire(row, slot, report)
        self._active = active
        await self._fire_once_due(now, report)
        return report

    async def _fire_once_due(self, now: datetime, report: TickReport) -> None:
        """Fire the once definitions due at ``now`` (late ones too: a restart after the
        instant still fires it, once); remember the soonest future one for next_wake."""
        self._next_once = None
        for row in await self.cron.store.definition_pending_once():
            name, at = row["name"], row["once_at"]
            if at > now:
                self._next_once = at
                break
            try:
                job = await self.cron.store.definition_fire_once(name, at, now, self._once_row(name))
            except ValueError as exc:
                self._report_once(name, "definition: once job refused; left for another engine", exc, at)
                continue
            if job is not None:
                report.inserted.append(job)
                log.info("definition: once job inserted", definition=name, at=at.isoformat(), job_id=job.id)
            else:
                report.taken.append((name, at))

    def _schedule(self, row: dict[str, Any]) -> CronSchedule | None:
        key = (row["schedule"], row["timezone"])
        if key not in self._schedules:
            try:
                self._schedules[key] = CronSchedule.parse(*key, entry=row["name"])
            except CronConfigError as exc:
                self._report_once(row["name"], "cron: entry cannot be scheduled", exc)
                return None
        return self._schedules[key]

    async def _fire(self, row: dict[str, Any], slot: datetime, report: TickReport) -> None:
        name = row["name"]
        try:
            outcome, job = await self.cron.store.cron_fire(
                name, slot, row["schedule"], row["timezone"],
                lambda document: self.cron.job_row(name, document, slot))
        except ValueError as exc:  # the job document no longer inserts (kind gone, ...)
            self._report_once(name, "cron: job refused; slot left for another engine", exc, slot)
            return
        self._reported.pop(name, None)
        if job is not None:
            report.inserted.append(job)
            log.info("cron: job inserted", entry=name, slot=slot.isoformat(), job_id=job.id)
        elif outcome == "skipped":
            report.skipped.append((name, slot))
            log.info("cron: slot skipped, previous run still active", entry=name, slot=slot.isoformat())
        else:
            report.taken.append((name, slot))

    def _once_row(self, name: str) -> Callable[[dict[str, Any]], InsertRow]:
        return lambda document: self.cron.definition_row(name, document)

    def _report_once(self, name: str, message: str, exc: Exception, slot: datetime | None = None) -> None:
        if self._reported.get(name) != str(exc):
            self._reported[name] = str(exc)
            log.error(message, entry=name, slot=slot.isoformat() if slot else None, error=str(exc))
