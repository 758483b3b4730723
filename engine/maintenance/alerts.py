"""Evaluates the config's ``[[alerts]]`` and notifies their transitions (README, "Alerts").

Every node that processes jobs runs this service; the database decides which one evaluates:
a round takes migration 011's lease row with SKIP LOCKED, and a round happens at most once
per ``alerts_interval`` between all nodes. In the round's one transaction it reads each
alert's metric (bounded statements, see engine/db/alert_rows.py), moves its state with
:func:`engine.core.alerts.next_state`, and for a ``fired`` or ``recovered`` step writes the
history row and inserts the notification jobs. So a transition and its notifications commit
together or not at all: an alert fires once and recovers once across nodes and restarts,
and a notification is never lost or doubled. Nothing here runs per job.

Notifications are ``mail`` and/or ``http`` jobs in the notifications queue, built the way
failure notifications are (engine/insert/followups.py): the details travel as ``vars`` and
the args reference them with placeholders, so nothing in a value is ever expanded.

Example::

    alerts = Alerts(store, config, inserter, node="web-1")
    steps = await alerts.evaluate_once()     # None: another node has this round
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import asyncpg
import structlog

from engine.core.alerts import AlertStatus, AlertStep, describe_value, next_state
from engine.core.config import AlertConfig, Config
from engine.core.errors import EnqueueError
from engine.core.job import JobSpec
from engine.db.faults import log_fault
from engine.db.rows import InsertRow
from engine.db.store import JobStore
from engine.insert.followups import NOTIFICATION_META, notification_settings
from engine.insert.inserter import Inserter

__all__ = ["ALERT_TAG", "Alerts", "Evaluated", "Reading"]

log = structlog.get_logger("jobengine.alerts")
ALERT_TAG = "alert"
HISTORY_KEEP = 30 * 86400.0
# A round waits for this share of the interval since the last one (any node's), so timers
# that drift a little do not skip a round.
ROUND_SLACK = 0.8
# Given a cron definition's row (schedule, timezone, last_slot, active_since) and the round's
# time: the slot it missed, or None. The node wires in engine/cron/schedule.py's missed_slot.
MissedSlot = Callable[[dict[str, Any], datetime], datetime | None]


@dataclass(frozen=True, slots=True)
class Reading:
    """A metric's value and what it is made of (which queues, nodes, definitions)."""

    value: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluated:
    """One alert after a round."""

    alert: AlertConfig
    reading: Reading
    step: AlertStep


class Alerts:
    """The alert evaluator of one node (see the module docstring)."""

    def __init__(self, store: JobStore, config: Config, inserter: Inserter, *, node: str,
                 missed_slot: MissedSlot | None = None, interval: float | None = None) -> None:
        self.store = store
        self.config = config
        self.alerts = list(config.alerts)
        self.inserter = inserter
        self.node = node
        self.missed_slot = missed_slot
        self.interval = config.alerts_interval if interval is None else interval
        self.defaults = notification_settings(config)

    async def evaluate_once(self, at: datetime | None = None) -> list[Evaluated] | None:
        """One round at ``at`` (None: the database's now); None when another node has it."""
        async with self.store.alert_round(min_gap=self.interval * ROUND_SLACK, node=self.node, at=at) as round_:
            if round_ is None:
                return None
            conn, now = round_.conn, round_.at
            states = await self.store.alert_states(conn)
            done = []
            for alert in self.alerts:
                reading = await self.read(conn, alert, now)
                stored = states.get(alert.name)
                current = AlertStatus(stored["state"], stored["since"]) if stored else None
                step = next_state(current, holds=reading.value > alert.limit, now=now, hold_for=alert.for_)
                since = current.since if step.event == "recovered" and current is not None else None
                if step.event is not None:
                    await self.store.alert_record(conn, alert.name, step.event, reading.value, alert.limit,
                                                  reading.detail, now)
                    await self.store.insert(self._notifications(alert, step, reading, now, since), conn=conn)
                await self.store.alert_save(conn, alert.name, step.status.state, step.status.since, reading.value,
                                            reading.detail, now)
                done.append(Evaluated(alert, reading, step))
            await self.store.alert_prune(conn, HISTORY_KEEP, now)
        for item in done:
            if item.step.event is not None:
                log.warning(f"alert {item.step.event}", alert=item.alert.name, metric=item.alert.metric,
                            value=item.reading.value, threshold=item.alert.limit)
        if any(item.step.event for item in done):  # open dashboards on every node update now
            await self.store.notify(self.store.statements.control_channel, json.dumps({"action": "alerts"}))
        return done

    async def run(self) -> None:
        """Evaluate every ``interval`` until cancelled; never ends on a database fault."""
        while True:
            try:
                await self.evaluate_once()
            except Exception as exc:  # the next round retries; nothing of this one was written
                log_fault(log, "alert evaluation failed", exc)
            await anyio.sleep(self.interval)

    # --- the metrics -------------------------------------------------------------------------

    async def read(self, conn: asyncpg.Connection, alert: AlertConfig, now: datetime) -> Reading:
        """The value of ``alert``'s metric now (README, "Alerts", says what each one means)."""
        store, metric = self.store, alert.metric
        if metric == "backlog":
            return Reading(await store.alert_backlog(conn, alert.queue), {"queue": alert.queue})
        if metric == "oldest_waiting":
            waits = await store.alert_oldest_waiting(conn, alert.queue)
            worst = max(waits, key=lambda name: waits[name], default=None)
            return Reading(waits[worst] if worst is not None else 0.0, {"queue": worst})
        if metric == "failure_rate":
            failed, finished = await store.alert_failures(conn, queue=alert.queue, definition=alert.definition,
                                                          window=alert.look_back)
            return Reading(failed / finished if finished else 0.0,
                           {"failed": failed, "finished": finished, "window_seconds": alert.look_back})
        if metric == "no_consumer":
            queues = await store.alert_no_consumer(conn, alert.queue, self.config.lifeline.rescue_after)
            return Reading(len(queues), {"queues": queues})
        if metric == "node_lost":
            nodes = await store.alert_lost_nodes(conn, alert.queue, rescue_after=self.config.lifeline.rescue_after,
                                                 window=alert.look_back)
            return Reading(len(nodes), {"nodes": nodes})
        return await self._cron_missed(conn, alert, now)

    async def _cron_missed(self, conn: asyncpg.Connection, alert: AlertConfig, now: datetime) -> Reading:
        missed = []
        if self.missed_slot is not None:
            for row in await self.store.alert_cron_entries(conn, alert.definition):
                slot = self.missed_slot(row, now)
                if slot is not None:
                    missed.append({"name": row["name"], "slot": slot.isoformat()})
        return Reading(len(missed), {"definitions": missed})

    # --- the notifications -------------------------------------------------------------------

    def _notifications(self, alert: AlertConfig, step: AlertStep, reading: Reading, at: datetime,
                       since: datetime | None) -> list[InsertRow]:
        target = alert.notify.model_dump() if alert.notify is not None else self.defaults
        if not target.get("email") and not target.get("webhook"):
            return []
        event = step.event
        shown = describe_value(alert.metric, reading.value)
        limit = describe_value(alert.metric, alert.limit)
        scope = alert.queue or alert.definition
        subject = (f"[jobengine] alert {alert.name} fired: {alert.metric} {shown} (above {limit})" if event == "fired"
                   else f"[jobengine] alert {alert.name} recovered: {alert.metric} {shown}")
        details = {"event": f"alert.{event}", "at": at.isoformat(),
                   "alert": {"name": alert.name, "metric": alert.metric, "queue": alert.queue,
                             "definition": alert.definition, "threshold": alert.limit, "forSeconds": alert.for_},
                   "value": reading.value, "detail": reading.detail,
                   "firingSince": since.isoformat() if since is not None else None}
        lines = [subject.removeprefix("[jobengine] "), f"metric: {alert.metric}" + (f" ({scope})" if scope else ""),
                 f"value: {shown}", f"threshold: {limit}", f"at: {at.isoformat()}"]
        lines += [f"{key}: {value}" for key, value in reading.detail.items() if value not in (None, [], {})]
        common: dict[str, Any] = {
            "queue": self.defaults["queue"], "tags": (ALERT_TAG,),
            "vars": {"alert": details, "alertText": "\n".join(lines), "alertSubject": subject},
            # A notification never notifies about itself: an alert's mail that fails is not
            # followed by a failure notification.
            "extra_meta": {NOTIFICATION_META: f"alert:{alert.name}", "alert": alert.name, "alert_event": event}}
        specs = []
        if target.get("email"):
            specs.append(JobSpec(kind="mail", args={"to": target["email"], "subject": "{{alertSubject}}",
                                                    "text": "{{alertText}}"}, **common))
        if target.get("webhook"):
            specs.append(JobSpec(kind="http", args={"method": "POST", "url": target["webhook"], "body": "{{alert}}"},
                                 **common))
        rows = []
        for spec in specs:
            try:
                rows.append(self.inserter.row(spec))
            except EnqueueError as exc:  # the state still moves: the dashboard shows the alert
                log.error("alert notification refused", alert=alert.name, kind=spec.kind, error=str(exc))
        return rows
