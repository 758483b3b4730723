"""Cron schedule math: which instants an entry fires at, and which slots are due now.

Pure: no I/O, no clock. Expressions are parsed by croniter, but croniter only ever sees
*local wall-clock times dressed as UTC*, so its calendar arithmetic never meets a DST
transition. Mapping each local time to a real instant is done here, with one policy
(see docs/cron.md):

- a local time that occurs twice (fall-back) fires once, at its first occurrence;
- a local time that does not exist (spring-forward) fires once, at the first valid
  instant after the gap (02:30 in America/New_York on the spring-forward day fires at
  03:00 EDT); several skipped times collapse into that one firing.

Example::

    daily = CronSchedule.parse("0 1 * * *", "Asia/Seoul")
    daily.next_slot(datetime(2025, 3, 1, tzinfo=UTC))  # 2025-03-01 16:00 UTC (01:00 KST on the 2nd)
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from engine.core.config import CronEntryConfig

__all__ = [
    "MAX_SLOTS_PER_TICK",
    "ON_TIME_GRACE",
    "CronConfigError",
    "CronEntry",
    "CronSchedule",
    "due_slots",
    "missed_slot",
]

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# Standard cron grammar only: `*`, numbers, three-letter names, ranges, steps, lists.
# croniter's extensions are refused on purpose: `R` (random) and `H` (hashed) would make
# processes disagree on the slots, and `L`/`#`/`?` are not what users of cron expect.
_ELEMENT = r"(?:\*|(?:\d{1,2}|[A-Za-z]{3})(?:-(?:\d{1,2}|[A-Za-z]{3}))?)(?:/\d{1,2})?"
FIELD_PATTERN = re.compile(rf"^{_ELEMENT}(?:,{_ELEMENT})*$")
# Seconds of slack a slot gets even without catch_up: a busy or restarting ticker that
# sees a slot this late still inserts it (the database makes sure only once).
ON_TIME_GRACE = 60.0
# Never insert more than this many slots of one entry in one tick (no burst after an outage).
MAX_SLOTS_PER_TICK = 100
_EPOCH_SECOND = timedelta(seconds=1)


class CronConfigError(ValueError):
    """A cron entry is invalid (bad expression, unknown timezone, ...); the message names it."""


def _zone(name: str, label: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronConfigError(f"{label}: unknown timezone {name!r} (use an IANA name such as "
                              f"'Europe/Berlin' or 'UTC')") from None


def _normalise(expr: str, label: str) -> tuple[str, bool]:
    """The expression croniter gets, and whether it has a seconds field (first of six)."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronConfigError(f"{label}: unknown alias {text!r}; known: {', '.join(ALIASES)}")
        return ALIASES[text.lower()], False
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise CronConfigError(f"{label}: cron expression {expr!r} needs 5 fields "
                              "(minute hour day month weekday) or 6 with seconds first")
    for part in fields:
        if not FIELD_PATTERN.match(part):
            raise CronConfigError(f"{label}: invalid field {part!r} in cron expression {expr!r}")
    return text, len(fields) == 6


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression in a timezone; produces the UTC instants it fires at.

    Example::

        weekdays = CronSchedule.parse("0 9-18 * * MON-FRI", "Europe/Berlin")
        weekdays.slots_between(start, end)   # aware UTC datetimes in (start, end]
    """

    expr: str
    timezone: str
    zone: tzinfo = field(repr=False, compare=False)
    croniter_expr: str = field(repr=False, compare=False)
    with_seconds: bool = field(default=False, compare=False)

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC", *, entry: str | None = None) -> CronSchedule:
        """Validate ``expr`` and ``timezone``; raise :class:`CronConfigError` naming ``entry``.

        Example::

            CronSchedule.parse("*/5 * * * *")                 # every 5 minutes, UTC
            CronSchedule.parse("0 0 1 JAN *", "Asia/Seoul")   # New Year, Seoul time
            CronSchedule.parse("*/10 * * * * *")              # every 10 s (seconds first)
        """
        label = f"cron entry {entry!r}" if entry else "cron schedule"
        if not isinstance(expr, str) or not expr.strip():
            raise CronConfigError(f"{label}: empty cron expression")
        zone = _zone(timezone, label)
        text, with_seconds = _normalise(expr, label)
        schedule = cls(expr.strip(), timezone, zone, text, with_seconds)
        try:
            schedule._local_iter(datetime(2000, 1, 1)).get_next(datetime)
        except CroniterError as exc:
            reason = "never fires" if "next date" in str(exc) else str(exc)
            raise CronConfigError(f"{label}: invalid cron expression {expr!r}: {reason}") from None
        return schedule

    def _local_iter(self, local_start: datetime) -> croniter:
        # Wall-clock times are passed as UTC so croniter does pure calendar arithmetic.
        return croniter(self.croniter_expr, local_start.replace(tzinfo=UTC), ret_type=datetime,
                        second_at_beginning=self.with_seconds)

    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        """Yield firing instants (aware, UTC) strictly after ``after``, ascending, each once."""
        if after.tzinfo is None:
            raise ValueError("cron times must be timezone-aware (e.g. datetime.now(UTC))")
        local = after.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        # Start one second early: get_next is exclusive and `local` itself may be a slot
        # (when `after` is in a repeated hour, its local time is past; the filter drops it).
        candidates = self._local_iter(local - _EPOCH_SECOND)
        previous = None
        while True:
            wall = candidates.get_next(datetime).replace(tzinfo=None)
            instant = local_to_utc(wall, self.zone)
            if instant > after and instant != previous:
                previous = instant
                yield instant

    def next_slot(self, after: datetime) -> datetime:
        """The first firing instant strictly after ``after`` (aware UTC)."""
        return next(self.iter_slots(after))

    def slots_between(self, start_exclusive: datetime, end_inclusive: datetime) -> list[datetime]:
        """Every firing instant in ``(start_exclusive, end_inclusive]``, ascending, UTC."""
        slots = []
        for instant in self.iter_slots(start_exclusive):
            if instant > end_inclusive:
                break
            slots.append(instant)
        return slots


def local_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """The instant a naive local wall time fires at, under the DST policy above.

    Example: 01:30 on the fall-back day -> its first occurrence; 02:30 on the
    spring-forward day in New York -> 03:00 EDT (07:00 UTC)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the earlier of two occurrences
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """The transition instant that skipped ``wall``: first valid instant after the gap."""
    # In a gap fold=1 applies the later offset, fold=0 the earlier one: the transition lies
    # strictly after `low` and at or before `high`. Binary search to the second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    before = low.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return low + timedelta(seconds=hi)


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One cron entry: a schedule, a timezone and the job document it inserts.

    ``overlap="skip"`` inserts nothing while the previous run is still active;
    ``catch_up`` (seconds) lets slots missed while no engine ran be inserted late,
    if no older than that (at most :data:`MAX_SLOTS_PER_TICK` of them).

    Example::

        entry = CronEntry("daily-stats", "0 1 * * *", "Asia/Seoul",
                          {"jobType": "log", "data": {"message": "hi"}})
        entry.cron.next_slot(now)
    """

    name: str
    schedule: str
    timezone: str = "UTC"
    job: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    overlap: Literal["allow", "skip"] = "allow"
    catch_up: float = 0.0
    cron: CronSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = f"cron entry {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            raise CronConfigError(f"{label}: name must be 1-200 characters")
        if self.overlap not in ("allow", "skip"):
            raise CronConfigError(f"{label}: overlap must be 'allow' or 'skip', not {self.overlap!r}")
        if not self.catch_up >= 0:
            raise CronConfigError(f"{label}: catch_up must be >= 0 seconds")
        if not isinstance(self.job, dict) or not self.job.get("jobType"):
            raise CronConfigError(f"{label}: job must be a job document with a 'jobType'")
        object.__setattr__(self, "cron", CronSchedule.parse(self.schedule, self.timezone, entry=self.name))

    @classmethod
    def from_config(cls, config: CronEntryConfig) -> CronEntry:
        """Build (and validate) an entry from a ``[[cron]]`` table of the config."""
        return cls(name=config.name, schedule=config.schedule, timezone=config.timezone,
                   job=dict(config.job), enabled=config.enabled, overlap=config.overlap,
                   catch_up=float(config.catch_up))


def due_slots(
    schedule: CronSchedule,
    now: datetime,
    *,
    last_slot: datetime | None,
    active_since: datetime | None,
    catch_up: float = 0.0,
    grace: float = ON_TIME_GRACE,
    limit: int = MAX_SLOTS_PER_TICK,
) -> list[datetime]:
    """The slots to insert at ``now``: the missed-run policy in one place.

    A slot is due when it is after the entry's last inserted slot, after the entry became
    active (added, enabled or rescheduled), and no older than ``max(catch_up, grace)``
    seconds. Only the newest ``limit`` are returned, oldest first.

    Example::

        due_slots(schedule, now, last_slot=None, active_since=None)  # on-time slots only
    """
    lower = now - timedelta(seconds=max(catch_up, grace))
    for bound in (last_slot, active_since):
        if bound is not None and bound > lower:
            lower = bound
    if lower >= now:
        return []
    # Probe backwards from `now` in growing spans, so a long window with a dense schedule
    # costs about `limit` slots of work, not the whole window.
    span = timedelta(hours=1)
    while True:
        start = max(lower, now - span)
        newest: deque[datetime] = deque(maxlen=limit)
        newest.extend(schedule.slots_between(start, now))
        if len(newest) >= limit or start == lower:
            return list(newest)
        span *= 4


def missed_slot(schedule: CronSchedule, now: datetime, *, last_slot: datetime | None,
                active_since: datetime | None, grace: float = ON_TIME_GRACE) -> datetime | None:
    """The oldest slot that went by unclaimed: after the last slot claimed (and after the
    entry became active), and more than ``grace`` seconds ago, when a ticker would still
    have inserted it. None when every slot so far was claimed (the ``cron_missed`` alert).

    Example::

        missed_slot(every_minute, now, last_slot=now - timedelta(minutes=5), active_since=None)
        # the slot 4 minutes ago
    """
    bounds = [bound for bound in (last_slot, active_since) if bound is not None]
    if not bounds:
        return None
    slot = schedule.next_slot(max(bounds))
    return slot if slot <= now - timedelta(seconds=grace) else None
