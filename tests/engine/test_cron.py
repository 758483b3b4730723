"""Cron schedule math, checked against an independent minute-by-minute matcher."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.core.config import build_config
from engine.cron.schedule import MAX_SLOTS_PER_TICK, CronConfigError, CronEntry, CronSchedule, due_slots

SEED_SCHEDULES = [
    "0 2 * * *", "0 9 * * 1", "0 0 1 * *", "*/5 * * * *",
    "0 9-18 * * 1-5", "0 1 * * *", "0 3 * * 0", "0 2 1 * *",
]
NAMES = {name: i for i, name in enumerate(
    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])} | {name: i + 1 for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- an independent matcher: expands each field to a set and tests wall times -------------

def expand(field: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in field.lower().split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, high
        else:
            a, _, b = base.partition("-")
            first = int(NAMES.get(a, a))
            last = int(NAMES.get(b, b)) if b else (high if step else first)
        values.update(range(first, last + 1, int(step or 1)))
    return values


def matcher(expr: str):
    minute, hour, dom, month, dow = expr.split()
    sets = [expand(f, lo, hi) for f, lo, hi in
            [(minute, 0, 59), (hour, 0, 23), (dom, 1, 31), (month, 1, 12), (dow, 0, 7)]]
    weekdays = {d % 7 for d in sets[4]}

    def matches(wall: datetime) -> bool:
        if wall.minute not in sets[0] or wall.hour not in sets[1] or wall.month not in sets[3]:
            return False
        day_ok, weekday_ok = wall.day in sets[2], (wall.isoweekday() % 7) in weekdays
        if dom != "*" and dow != "*":  # cron's rule: both restricted -> either matches
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    return matches


@functools.cache
def minutes(tz: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime, list[datetime]]]:
    """Every real minute in (start, end] with its local time and the local minutes a
    spring-forward jump skipped just before it."""
    zone, walk = ZoneInfo(tz), []
    instant, offset = start + MINUTE, start.astimezone(zone).utcoffset()
    while instant <= end:
        local = instant.astimezone(zone)
        jump, offset = local.utcoffset() - offset, local.utcoffset()
        skipped = [local.replace(tzinfo=None) - jump + k * MINUTE for k in range(int(jump / MINUTE))]
        walk.append((instant, local, skipped))
        instant += MINUTE
    return walk


def brute_force(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Walk real minutes in (start, end]: fire when the local time matches and is its first
    occurrence; at a spring-forward jump, fire once if any skipped local minute matches."""
    matches = matcher(expr)
    return [instant for instant, local, skipped in minutes(tz, start, end)
            if (matches(local) and local.fold == 0) or any(matches(wall) for wall in skipped)]


# --- every seed schedule over a simulated month ---------------------------------------------

@pytest.mark.parametrize("expr", SEED_SCHEDULES)
@pytest.mark.parametrize("tz, month", [
    ("UTC", (2025, 1)), ("Asia/Seoul", (2025, 6)),
    ("America/New_York", (2025, 3)), ("America/New_York", (2025, 11)),
    ("Europe/Berlin", (2025, 3)), ("Europe/Berlin", (2025, 10)),
])
def test_seed_schedule_fires_on_exactly_the_right_instants_over_a_month(
    expr: str, tz: str, month: tuple[int, int]
) -> None:
    start = utc(*month, 1) - timedelta(days=1)
    end = start + timedelta(days=33)
    expected = brute_force(expr, tz, start, end)
    assert expected, "the window must contain firings"
    assert CronSchedule.parse(expr, tz).slots_between(start, end) == expected


def test_seed_examples_land_on_the_documented_instants() -> None:
    after = utc(2025, 1, 1)
    def first(expr: str, count: int = 1) -> list[datetime]:
        return CronSchedule.parse(expr).slots_between(after, after + timedelta(days=70))[:count]
    assert first("0 2 * * *") == [utc(2025, 1, 1, 2)]
    assert first("0 9 * * 1") == [utc(2025, 1, 6, 9)]            # the first Monday
    assert first("0 0 1 * *", 2) == [utc(2025, 2, 1), utc(2025, 3, 1)]  # `after` itself excluded
    assert first("*/5 * * * *", 2) == [utc(2025, 1, 1, 0, 5), utc(2025, 1, 1, 0, 10)]
    weekdays = first("0 9-18 * * 1-5", 11)  # Wed 1 Jan 09:00..18:00 is 10 runs, then Thursday
    assert weekdays == [utc(2025, 1, 1, h) for h in range(9, 19)] + [utc(2025, 1, 2, 9)]
    assert first("0 3 * * 0") == [utc(2025, 1, 5, 3)]            # Sunday
    assert first("0 2 1 * *", 2) == [utc(2025, 1, 1, 2), utc(2025, 2, 1, 2)]


def test_daily_one_am_in_seoul_is_four_pm_utc_the_previous_day() -> None:
    schedule = CronSchedule.parse("0 1 * * *", "Asia/Seoul")
    assert schedule.next_slot(utc(2025, 5, 10, 12)) == utc(2025, 5, 10, 16)
    assert schedule.next_slot(utc(2025, 5, 10, 16)) == utc(2025, 5, 11, 16)


# --- DST policy -----------------------------------------------------------------------------

def test_spring_forward_skipped_time_fires_once_at_the_next_valid_instant() -> None:
    # 2025-03-09: New York jumps from 02:00 EST to 03:00 EDT (07:00 UTC).
    schedule = CronSchedule.parse("30 2 * * *", "America/New_York")
    slots = schedule.slots_between(utc(2025, 3, 8), utc(2025, 3, 11))
    assert slots == [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 0), utc(2025, 3, 10, 6, 30)]
    assert slots[1].astimezone(ZoneInfo("America/New_York")).strftime("%H:%M %Z") == "03:00 EDT"


def test_spring_forward_collapses_skipped_slots_into_one_firing() -> None:
    # Every 15 min in Berlin across 2025-03-30 02:00 CET -> 03:00 CEST (01:00 UTC).
    schedule = CronSchedule.parse("*/15 * * * *", "Europe/Berlin")
    slots = schedule.slots_between(utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 1, 30))
    assert slots == [utc(2025, 3, 30, 0, 45), utc(2025, 3, 30, 1, 0),
                     utc(2025, 3, 30, 1, 15), utc(2025, 3, 30, 1, 30)]


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    # 2025-11-02: New York repeats 01:00-01:59 (EDT 05:00 UTC, then EST 06:00 UTC).
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    slots = schedule.slots_between(utc(2025, 11, 1, 12), utc(2025, 11, 3, 12))
    assert slots == [utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]
    # Asked again from inside the second pass, the repeated time does not fire again.
    assert schedule.next_slot(utc(2025, 11, 2, 6, 15)) == utc(2025, 11, 3, 6, 30)


def test_fall_back_in_berlin_fires_the_two_am_entry_once() -> None:
    # 2025-10-26: Berlin repeats 02:00-02:59 (CEST 00:00 UTC, then CET 01:00 UTC).
    schedule = CronSchedule.parse("0 2 * * *", "Europe/Berlin")
    slots = schedule.slots_between(utc(2025, 10, 25, 12), utc(2025, 10, 26, 12))
    assert slots == [utc(2025, 10, 26, 0, 0)]


def test_hourly_in_a_dst_zone_fires_each_local_hour_once_on_fall_back_day() -> None:
    schedule = CronSchedule.parse("@hourly", "America/New_York")
    # The local day 2 Nov 00:00 EDT .. 23:59 EST lasts 25 real hours.
    day = schedule.slots_between(utc(2025, 11, 2, 4) - MINUTE, utc(2025, 11, 3, 5) - MINUTE)
    assert len(day) == 24 and utc(2025, 11, 2, 6) not in day  # 01:00 EST (the repeat) skipped


# --- parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize("alias, expr", [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
])
def test_aliases_fire_like_their_expansions(alias: str, expr: str) -> None:
    # The expansions' own instants are checked against the brute-force matcher above.
    start, end = utc(2024, 12, 1), utc(2027, 2, 1)
    slots = CronSchedule.parse(alias, "Europe/Berlin").slots_between(start, end)
    assert slots and slots == CronSchedule.parse(expr, "Europe/Berlin").slots_between(start, end)


def test_names_lists_and_steps_are_understood() -> None:
    start, end = utc(2025, 1, 1), utc(2025, 3, 1)
    named = CronSchedule.parse("15,45 8-17/3 * JAN MON-FRI", "Europe/Berlin")
    assert named.slots_between(start, end) == brute_force("15,45 8-17/3 * 1 1-5", "Europe/Berlin", start, end)


def test_day_of_month_or_weekday_when_both_are_restricted() -> None:
    start, end = utc(2025, 1, 1), utc(2025, 3, 1)
    slots = CronSchedule.parse("0 12 13 * 5").slots_between(start, end)
    assert slots == brute_force("0 12 13 * 5", "UTC", start, end)
    assert utc(2025, 1, 13, 12) in slots and utc(2025, 1, 3, 12) in slots  # the 13th, a Friday


def test_seconds_field_comes_first_and_is_exact() -> None:
    schedule = CronSchedule.parse("*/20 * * * * *", "America/New_York")
    slots = schedule.slots_between(utc(2025, 3, 9, 6, 59), utc(2025, 3, 9, 7, 1))
    assert slots == [utc(2025, 3, 9, 6, 59, 20), utc(2025, 3, 9, 6, 59, 40), utc(2025, 3, 9, 7),
                     utc(2025, 3, 9, 7, 0, 20), utc(2025, 3, 9, 7, 0, 40), utc(2025, 3, 9, 7, 1)]
    assert CronSchedule.parse("30 0 9 * * *").next_slot(utc(2025, 1, 1)) == utc(2025, 1, 1, 9, 0, 30)


def test_slot_boundaries_are_exclusive_at_start_and_inclusive_at_end() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    at = utc(2025, 1, 1, 10, 5)
    assert schedule.slots_between(at, at + timedelta(minutes=5)) == [at + timedelta(minutes=5)]
    assert schedule.next_slot(at - timedelta(microseconds=1)) == at


@pytest.mark.parametrize("expr, message", [
    ("61 * * * *", "out of range"), ("* * *", "needs 5 fields"), ("0 0 31 2 *", "never fires"),
    ("0 0 * * MON-FRX", "invalid cron expression"), ("H * * * *", "invalid field"),
    ("R 0 * * *", "invalid field"), ("0 0 L * *", "invalid field"), ("@reboot", "unknown alias"),
    ("", "empty"),
])
def test_invalid_expressions_are_rejected_naming_the_entry(expr: str, message: str) -> None:
    with pytest.raises(CronConfigError, match=message) as info:
        CronSchedule.parse(expr, "UTC", entry="nightly")
    assert "'nightly'" in str(info.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../etc/passwd", ""])
def test_unknown_timezone_is_rejected_naming_the_entry(tz: str) -> None:
    with pytest.raises(CronConfigError, match="cron entry 'nightly': unknown timezone"):
        CronSchedule.parse("0 1 * * *", tz, entry="nightly")


# --- entries and the missed-run policy ------------------------------------------------------

def test_entry_from_config_validates_and_keeps_every_setting() -> None:
    config = build_config({"cron": [{
        "name": "daily-stats", "schedule": "0 1 * * *", "timezone": "Asia/Seoul",
        "job": {"jobType": "http", "data": {"method": "PUT", "url": "https://a.example/stats"}},
        "overlap": "skip", "catch_up": "2h",
    }]})
    entry = CronEntry.from_config(config.cron[0])
    assert (entry.name, entry.timezone, entry.overlap, entry.catch_up) == (
        "daily-stats", "Asia/Seoul", "skip", 7200.0)
    assert entry.cron.next_slot(utc(2025, 1, 1)) == utc(2025, 1, 1, 16)
    bad = build_config({"cron": [{"name": "typo", "schedule": "0 25 * * *", "job": {"jobType": "log"}}]})
    with pytest.raises(CronConfigError, match="cron entry 'typo'"):
        CronEntry.from_config(bad.cron[0])


def test_entry_needs_a_job_document() -> None:
    with pytest.raises(CronConfigError, match="'x': job must be a job document"):
        CronEntry("x", "* * * * *", job={"data": {}})


def test_default_policy_inserts_only_on_time_slots_after_downtime() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    # Down from 09:00 to 12:00:30: the slots in between are not backfilled; 12:00 is on time.
    due = due_slots(schedule, utc(2025, 1, 1, 12, 0, 30), last_slot=utc(2025, 1, 1, 9), active_since=None)
    assert due == [utc(2025, 1, 1, 12)]
    assert due_slots(schedule, utc(2025, 1, 1, 12, 1, 30), last_slot=utc(2025, 1, 1, 9),
                     active_since=None) == []


def test_catch_up_inserts_missed_slots_within_its_window_only() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    now = utc(2025, 1, 1, 12, 2)
    due = due_slots(schedule, now, last_slot=utc(2025, 1, 1, 9), active_since=None, catch_up=1800)
    assert due == [utc(2025, 1, 1, 11, 35) + k * timedelta(minutes=5) for k in range(6)]


def test_catch_up_is_capped_and_keeps_the_newest_slots() -> None:
    schedule = CronSchedule.parse("* * * * * *")  # every second
    now = utc(2025, 1, 1, 12)
    due = due_slots(schedule, now, last_slot=None, active_since=None, catch_up=30 * 86400)
    assert len(due) == MAX_SLOTS_PER_TICK and due[-1] == now and due == sorted(due)


def test_nothing_before_the_entry_became_active_or_its_last_slot_is_due() -> None:
    schedule = CronSchedule.parse("* * * * *")
    now = utc(2025, 1, 1, 12, 0, 30)
    assert due_slots(schedule, now, last_slot=None, active_since=utc(2025, 1, 1, 12, 0, 10),
                     catch_up=3600) == []
    assert due_slots(schedule, now, last_slot=utc(2025, 1, 1, 12), active_since=None) == []
    # A clock stepped backwards sees its last slot in the future: nothing is due.
    assert due_slots(schedule, utc(2025, 1, 1, 11), last_slot=utc(2025, 1, 1, 12),
                     active_since=None, catch_up=86400) == []
