"""Alerts (engine/maintenance/alerts.py, migration 011): each metric's statement against real
Postgres, the state rule (``for`` holds firing back; fire once, recover once), one round at a
time between evaluators, and config errors that name the key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import pytest_asyncio

from engine.core.alerts import AlertStatus, describe_value, next_state
from engine.core.config import Config, ConfigError, build_config
from engine.core.job import JobSpec
from engine.db import sql
from engine.db.store import JobStore
from engine.engine import Engine
from engine.insert.followups import NOTIFICATION_QUEUE
from engine.maintenance.alerts import Alerts
from engine.node import cron_missed_check
from tests.support.plans import explain, scans

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOTIFY = {"email": "ops@example.test", "webhook": "https://hooks.example.test/alerts"}


@pytest_asyncio.fixture
async def client(make_config: Callable[..., Config]) -> AsyncIterator[Callable[..., Any]]:
    """``await client(alerts=[...])``: an insert-only engine (nothing claims its jobs, nothing
    evaluates on its own) and the evaluator the test drives, as ``(engine, alerts)``."""
    engines: list[Engine] = []

    async def start(alerts: list[dict[str, Any]], **settings: Any) -> tuple[Engine, Alerts]:
        engine = Engine(config=make_config(alerts=alerts, **settings))
        await engine.start()
        engines.append(engine)
        assert engine.store is not None
        return engine, Alerts(engine.store, engine.config, engine.inserter, node=f"node-{len(engines)}",
                              missed_slot=cron_missed_check(), interval=0.0)

    yield start
    for engine in engines:
        await engine.stop()


def _store(engine: Engine) -> JobStore:
    assert engine.store is not None
    return engine.store


async def _sql(engine: Engine, text: str, *args: Any) -> Any:
    async with _store(engine).pool.acquire() as conn:
        return await conn.fetch(text.replace("{schema}", sql.quote_ident(_store(engine).schema)), *args)


async def _read(alerts: Alerts, index: int = 0) -> Any:
    async with _store_of(alerts).pool.acquire() as conn:
        return await alerts.read(conn, alerts.alerts[index], datetime.now(UTC))


def _store_of(alerts: Alerts) -> JobStore:
    return alerts.store


# --- the metrics ---------------------------------------------------------------------------------


async def test_backlog_counts_available_and_due_jobs_of_its_queue(client: Any) -> None:
    engine, alerts = await client([{"name": "work", "metric": "backlog", "queue": "work", "threshold": 2},
                                   {"name": "all", "metric": "backlog", "threshold": 2}])
    for _ in range(2):
        await engine.enqueue("log", {"message": "x"}, queue="work")
    due = await engine.enqueue("log", {"message": "due"}, queue="work", delay=600)
    await engine.enqueue("log", {"message": "later"}, queue="work", delay=600)
    await engine.enqueue("log", {"message": "elsewhere"}, queue="other")
    await _sql(engine, "UPDATE {schema}.jobs SET scheduled_at = now() - interval '1 second' WHERE id = $1", due.id)
    assert (await _read(alerts, 0)).value == 3  # two available, one due; the later one waits its turn
    assert (await _read(alerts, 1)).value == 4


async def test_oldest_waiting_is_the_longest_wait_of_any_queue(client: Any) -> None:
    engine, alerts = await client([{"name": "slow", "metric": "oldest_waiting", "threshold": "1m"}])
    assert alerts.alerts[0].threshold == 60.0
    old = await engine.enqueue("log", {"message": "old"}, queue="reports")
    await engine.enqueue("log", {"message": "new"}, queue="mail")
    await _sql(engine, "UPDATE {schema}.jobs SET scheduled_at = now() - interval '300 seconds' WHERE id = $1", old.id)
    reading = await _read(alerts)
    assert 299 < reading.value < 330 and reading.detail == {"queue": "reports"}


async def test_failure_rate_reads_the_rollup_or_a_definitions_newest_jobs(client: Any) -> None:
    engine, alerts = await client([{"name": "q", "metric": "failure_rate", "queue": "mail", "threshold": 0.1},
                                   {"name": "d", "metric": "failure_rate", "definition": "nightly", "threshold": 0.1,
                                    "window": "1h"}])
    await _sql(engine, "INSERT INTO {schema}.job_rollup (minute, queue, kind, completed, discarded, wait_hist, "
               "run_hist) VALUES "
               "(date_trunc('minute', now()) - interval '2 minutes', 'mail', 'mail', 6, 2, '{}', '{}'),"
               " (date_trunc('minute', now()) - interval '2 hours', 'mail', 'mail', 0, 50, '{}', '{}'),"
               " (date_trunc('minute', now()) - interval '2 minutes', 'other', 'mail', 0, 9, '{}', '{}')")
    reading = await _read(alerts, 0)
    assert reading.value == 0.25 and reading.detail["finished"] == 8  # the old minute is outside the window
    await _sql(engine, "INSERT INTO {schema}.jobs (queue, kind, state, meta, completed_at, discarded_at) "
               "SELECT 'default', 'log', s, '{\"definition\": \"nightly\"}', "
               "CASE WHEN s = 'completed' THEN now() END, CASE WHEN s = 'discarded' THEN now() END "
               "FROM unnest(ARRAY['completed', 'completed', 'completed', 'discarded']) AS s")
    assert (await _read(alerts, 1)).value == 0.25


async def test_no_consumer_lists_waiting_queues_no_live_node_runs(client: Any) -> None:
    engine, alerts = await client([{"name": "orphans", "metric": "no_consumer"}])
    await engine.enqueue("log", {"message": "x"}, queue="served")
    await engine.enqueue("log", {"message": "x"}, queue="orphan")
    await _sql(engine, "INSERT INTO {schema}.nodes (name, queues) VALUES ('n1', '{served}'), "
               "('gone', '{orphan}')")
    await _sql(engine, "UPDATE {schema}.nodes SET heartbeat_at = now() - interval '1 hour' WHERE name = 'gone'")
    assert (await _read(alerts)).detail == {"queues": ["orphan"]}
    await _sql(engine, "UPDATE {schema}.nodes SET queues = '{served,orphan}' WHERE name = 'n1'")
    assert (await _read(alerts)).value == 0


async def test_node_lost_counts_silent_and_recently_lost_nodes(client: Any) -> None:
    engine, alerts = await client([{"name": "lost", "metric": "node_lost", "queue": "default"}])
    await _sql(engine, "INSERT INTO {schema}.nodes (name, queues, heartbeat_at) VALUES "
               "('live', '{default}', now()), ('silent', '{default}', now() - interval '10 minutes'), "
               "('elsewhere', '{mail}', now() - interval '10 minutes')")
    await _sql(engine, "INSERT INTO {schema}.departed_nodes (name, queues, reason, departed_at) VALUES "
               "('crashed', '{default}', 'lost', now() - interval '1 minute'), "
               "('long-ago', '{default}', 'lost', now() - interval '2 hours'), "
               "('stopped', '{default}', 'stopped', now())")
    assert (await _read(alerts)).detail == {"nodes": ["crashed", "silent"]}


async def test_cron_missed_names_definitions_whose_slot_went_by(client: Any) -> None:
    engine, alerts = await client([{"name": "cron", "metric": "cron_missed"}])
    await _sql(engine, "INSERT INTO {schema}.cron_entries (name, schedule, job, active_since, last_slot) VALUES "
               "('stuck', '* * * * *', '{}', now() - interval '10 minutes', now() - interval '5 minutes'), "
               "('fine', '* * * * *', '{}', now() - interval '10 minutes', date_trunc('minute', now())), "
               "('new', '0 3 * * *', '{}', now(), NULL)")
    reading = await _read(alerts)
    assert [entry["name"] for entry in reading.detail["definitions"]] == ["stuck"]


# --- evaluation ------------------------------------------------------------------------------------


async def _notifications(engine: Engine) -> list[Any]:
    return await engine.list_jobs(queue=NOTIFICATION_QUEUE)


async def _history(engine: Engine) -> list[tuple[str, str]]:
    rows = await _sql(engine, "SELECT name, event FROM {schema}.alert_history ORDER BY id")
    return [(r["name"], r["event"]) for r in rows]


async def test_for_holds_firing_back_then_it_fires_once_and_recovers_once(client: Any) -> None:
    engine, alerts = await client([{"name": "busy", "metric": "backlog", "queue": "work", "threshold": 1,
                                    "for": "60s", "notify": NOTIFY}])
    jobs = [await engine.enqueue("log", {"message": str(n)}, queue="work") for n in range(2)]

    first = await alerts.evaluate_once(T0)
    assert first is not None and first[0].step.status.state == "pending" and first[0].step.event is None
    later = await alerts.evaluate_once(T0 + timedelta(seconds=30))
    assert later is not None and later[0].step.status == AlertStatus("pending", T0)
    assert await _history(engine) == [] and await _notifications(engine) == []

    fired = await alerts.evaluate_once(T0 + timedelta(seconds=61))
    assert fired is not None and fired[0].step.event == "fired"
    await alerts.evaluate_once(T0 + timedelta(seconds=90))  # still firing: nothing new
    sent = await _notifications(engine)
    assert sorted(job.kind for job in sent) == ["http", "mail"]
    mail = next(job for job in sent if job.kind == "mail")
    assert mail.args == {"to": "ops@example.test", "subject": "{{alertSubject}}", "text": "{{alertText}}"}
    assert mail.vars["alertSubject"] == "[jobengine] alert busy fired: backlog 2 jobs (above 1 job)"
    webhook = next(job for job in sent if job.kind == "http")
    assert webhook.vars["alert"]["event"] == "alert.fired" and webhook.vars["alert"]["value"] == 2

    for job in jobs:
        await engine.delete(job.id)
    recovered = await alerts.evaluate_once(T0 + timedelta(seconds=120))
    assert recovered is not None and recovered[0].step.event == "recovered"
    await alerts.evaluate_once(T0 + timedelta(seconds=150))
    assert await _history(engine) == [("busy", "fired"), ("busy", "recovered")]
    assert len(await _notifications(engine)) == 4


async def test_two_evaluators_take_turns_and_a_restart_keeps_the_state(client: Any) -> None:
    settings = {"failure_notification": {"webhook": "https://hooks.example.test/x"}}
    spec = [{"name": "busy", "metric": "backlog", "threshold": 0}]
    engine, one = await client(spec, **settings)
    _, other = await client(spec, **settings)
    await engine.enqueue("log", {"message": "x"}, queue="work")
    one.interval = other.interval = 10.0
    results: list[Any] = []

    async def evaluate(alerts: Alerts) -> None:
        results.append(await alerts.evaluate_once(T0))

    async with anyio.create_task_group() as group:
        group.start_soon(evaluate, one)
        group.start_soon(evaluate, other)
    assert sorted(result is None for result in results) == [False, True]  # the database picked one
    assert await other.evaluate_once(T0 + timedelta(seconds=5)) is None  # too soon after the last round

    restarted = Alerts(_store(engine), engine.config, engine.inserter, node="node-3", interval=10.0)
    again = await restarted.evaluate_once(T0 + timedelta(seconds=60))
    assert again is not None and again[0].step.event is None and again[0].step.status.state == "firing"
    assert await _history(engine) == [("busy", "fired")]
    assert [job.kind for job in await _notifications(engine)] == ["http"]  # the default target


def test_the_state_rule() -> None:
    fired = next_state(None, holds=True, now=T0, hold_for=0.0)
    assert fired.event == "fired" and fired.status == AlertStatus("firing", T0)
    assert next_state(fired.status, holds=True, now=T0 + timedelta(seconds=5), hold_for=0.0).event is None
    back = next_state(AlertStatus("pending", T0), holds=False, now=T0 + timedelta(seconds=5), hold_for=60.0)
    assert back.event is None and back.status.state == "ok"  # pending never told anyone
    assert describe_value("failure_rate", 0.042) == "4.2 %" and describe_value("no_consumer", 1) == "1 queue"


@pytest.mark.parametrize(("alert", "message"), [
    ({"name": "a", "metric": "backlogg", "threshold": 1}, "'alerts.0.metric'"),
    ({"name": "a", "metric": "backlog"}, "metric backlog needs a 'threshold'"),
    ({"name": "a", "metric": "cron_missed", "queue": "x"}, "'queue' does not apply to metric cron_missed"),
    ({"name": "a", "metric": "no_consumer", "notify": {"webhook": "ftp://x"}}, "'alerts.0.notify.webhook'"),
    ({"name": "a", "metric": "no_consumer", "notify": {"mail": "x@y"}}, "unknown key 'alerts.0.notify.mail'"),
    ({"name": "a", "metric": "failure_rate", "threshold": 5}, "share from 0 to 1"),
    ({"name": "a", "metric": "node_lost", "for": "soon"}, "'alerts.0.for'"),
    ({"name": "a", "metric": "backlog", "threshold": "5m"}, "'threshold' must be a number"),
    ({"name": "a/b", "metric": "node_lost"}, "alert name 'a/b' must not contain /"),
    ({"name": "a", "metric": "node_lost", "threshold": 0, "every": 3}, "unknown key 'alerts.0.every'"),
])
def test_alert_config_errors_name_the_key(alert: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"alerts": [alert]})
    assert message in str(caught.value)


def test_alert_names_are_unique() -> None:
    with pytest.raises(ConfigError, match="alert names must be unique; repeated: a"):
        build_config({"alerts": [{"name": "a", "metric": "node_lost"}, {"name": "a", "metric": "no_consumer"}]})


async def test_the_metric_reads_walk_indexes_not_the_table(client: Any) -> None:
    engine, _ = await client([])
    await _sql(engine, "INSERT INTO {schema}.jobs (queue, kind, state, completed_at) "
               "SELECT 'q' || (n % 5), 'log', 'completed', now() FROM generate_series(1, 20000) AS n")
    await engine.enqueue_many([JobSpec(kind="log", args={"message": "x"}, queue=f"q{n % 5}") for n in range(50)])
    await _sql(engine, "ANALYZE {schema}.jobs")
    statements = _store(engine).statements
    async with _store(engine).pool.acquire() as conn:
        for text, args in ((statements.ALERT_METRIC_QUEUE_BACKLOG, ("q1", 100_000)),
                           (statements.ALERT_METRIC_BACKLOG, (100_000,)),
                           (statements.ALERT_METRIC_NO_CONSUMER, (30.0, None))):
            found = scans(await explain(conn, text, *args, mode="force_generic_plan"))
            assert found and all(kind != "Seq Scan" for kind, _ in found), found
