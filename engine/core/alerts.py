"""Alert state: the pure rule that moves one alert between ``ok``, ``pending`` and ``firing``.

An alert's condition holds when its metric's value is above its threshold. It goes
``ok -> pending`` when the condition starts to hold, ``pending -> firing`` once it has held
for ``for`` seconds (at once when ``for`` is 0), and back to ``ok`` from either as soon as
it stops holding. Only two steps are events that notify: ``fired`` (entering firing) and
``recovered`` (leaving it). The evaluator (engine/maintenance/alerts.py) applies a step and
its notification jobs in one transaction, so each event happens once.

Example::

    step = next_state(AlertStatus("ok", since=t0), holds=True, now=t1, hold_for=0.0)
    step.status.state, step.event          # ('firing', 'fired')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["AlertEvent", "AlertState", "AlertStatus", "AlertStep", "describe_value", "next_state"]

AlertState = Literal["ok", "pending", "firing"]
AlertEvent = Literal["fired", "recovered"]


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """Where an alert is, and since when (the instant it entered that state)."""

    state: AlertState
    since: datetime


@dataclass(frozen=True, slots=True)
class AlertStep:
    """The status after one evaluation, and the event it makes (None: nothing to tell)."""

    status: AlertStatus
    event: AlertEvent | None = None


def next_state(current: AlertStatus | None, *, holds: bool, now: datetime, hold_for: float) -> AlertStep:
    """One evaluation: ``holds`` says whether the value is above the threshold at ``now``.

    Example::

        next_state(None, holds=True, now=t, hold_for=60.0)   # pending since t, no event
    """
    state = current.state if current is not None else "ok"
    if not holds:
        if state == "ok" and current is not None:
            return AlertStep(current)
        return AlertStep(AlertStatus("ok", now), "recovered" if state == "firing" else None)
    if state == "firing" and current is not None:
        return AlertStep(current)
    pending_since = current.since if state == "pending" and current is not None else now
    if (now - pending_since).total_seconds() >= hold_for:
        return AlertStep(AlertStatus("firing", now), "fired")
    return AlertStep(AlertStatus("pending", pending_since))


def describe_value(metric: str, value: float | None) -> str:
    """A metric's value as people read it: ``12 jobs``, ``95 s``, ``4.2 %``, ``1 queue``.

    Example::

        describe_value("failure_rate", 0.042)    # '4.2 %'
    """
    if value is None:
        return "–"
    if metric == "failure_rate":
        return f"{value * 100:.1f} %"
    if metric == "oldest_waiting":
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"
    units = {"backlog": "job", "no_consumer": "queue", "cron_missed": "definition", "node_lost": "node"}
    count = round(value)
    unit = units.get(metric, "")
    return f"{count} {unit}{'s' if count != 1 else ''}".strip()
