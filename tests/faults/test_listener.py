"""The LISTEN connection killed under the engine: it comes back at once and jobs still start
promptly although polling is slow; restarts leak no connection, socket or file."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import psutil
import pytest
import structlog

from tests.support.ledger import KIND, read_ledger, started_ids
from tests.support.scripted import scripted_registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SLOW_POLL = 30.0  # a job that starts within a second or two was not found by polling


async def listener_pids(conn: asyncpg.Connection, schema: str) -> list[int]:
    name = f"jobengine listener {schema}"[:63]
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
    return [row["pid"] for row in rows]


async def kill_listener(conn: asyncpg.Connection, schema: str) -> int:
    (pid,) = await wait_until(lambda: listener_pids(conn, schema))
    assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


async def start_latency(client, ledger_path) -> float:
    """Insert one job; seconds until its handler started."""
    inserted = time.time()
    job = await client.enqueue(KIND, {})
    await wait_until(lambda: job.id in started_ids(read_ledger(ledger_path)), timeout=SLOW_POLL / 2)
    started = next(e.at for e in read_ledger(ledger_path) if e.job_id == job.id and e.event == "start")
    return started - inserted


async def test_job_starts_promptly_after_listener_is_terminated(spawn_engine, client, pg_url, schema,
                                                                ledger_path) -> None:
    engine = await spawn_engine(pg_url, schema, poll_interval=SLOW_POLL)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await start_latency(client, ledger_path) < 1.0  # notified, not polled
        latencies = []
        for _ in range(3):
            old = await kill_listener(conn, schema)
            latencies.append(await start_latency(client, ledger_path))  # inserted right after the kill
            await wait_until(lambda old=old: _replaced(conn, schema, old))
            latencies.append(await start_latency(client, ledger_path))  # on the new connection
    finally:
        await conn.close()
    print(f"\njob start after the listener was terminated: max {max(latencies):.3f}s "
          f"(poll_interval {SLOW_POLL}s): {[round(x, 3) for x in latencies]}")
    assert max(latencies) < 2.0
    assert len(engine.logged("listener reconnected")) == 3


async def _replaced(conn: asyncpg.Connection, schema: str, old: int) -> bool:
    pids = await listener_pids(conn, schema)
    return bool(pids) and old not in pids


def engine_resources(pid: int) -> tuple[int, int]:
    """(open file descriptors, sockets) of process ``pid``."""
    process = psutil.Process(pid)
    return process.num_fds(), len(process.net_connections(kind="all"))


async def run_batch(conn: asyncpg.Connection, schema: str, count: int) -> None:
    await conn.execute(f"""INSERT INTO "{schema}".jobs (kind, args) SELECT '{KIND}', '{{}}'
                           FROM generate_series(1, $1)""", count)
    await conn.execute("SELECT pg_notify($1, 'default')", f"{schema}.jobs_inserted")
    await wait_until(lambda: conn.fetchval(f"""SELECT count(*) = 0 FROM "{schema}".jobs
                                               WHERE state <> 'completed'"""), timeout=20, interval=0.05)


async def test_listener_restarts_and_many_jobs_leak_no_resources(spawn_engine, pg_url, schema) -> None:
    engine = await spawn_engine(pg_url, schema, pool_size=10)
    conn = await asyncpg.connect(pg_url)
    try:
        await run_batch(conn, schema, 300)  # the pool grows to what the load needs
        fds_before, sockets_before = engine_resources(engine.pid)
        for _ in range(5):
            old = await kill_listener(conn, schema)
            await wait_until(lambda old=old: _replaced(conn, schema, old))
            await run_batch(conn, schema, 300)
        fds_after, sockets_after = engine_resources(engine.pid)
        listeners = await listener_pids(conn, schema)
    finally:
        await conn.close()
    print(f"\nafter 1,800 jobs and 5 listener kills: fds {fds_before} -> {fds_after}, "
          f"sockets {sockets_before} -> {sockets_after}")
    assert len(listeners) == 1
    assert sockets_after <= sockets_before
    assert fds_after <= fds_before
    assert sockets_after <= 10 + 1 + 2  # pool, listener, the event loop's self-pipe


async def test_listen_that_loses_notifications_is_given_up_once_and_polling_takes_over(start_engine, recorder):
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 2}},
                                poll_interval=0.3, lifeline={"heartbeat_interval": 0.1, "rescue_after": 5})
    await wait_until(lambda: engine.notifier.connected)
    queue = engine.store
    real_ping = queue.ping_listener

    async def lossy_ping(conn, channel, payload):  # as a transaction pooler would: the NOTIFY goes elsewhere
        await real_ping(conn, channel + "_lost", payload)

    with structlog.testing.capture_logs() as logs:
        queue.ping_listener = lossy_ping
        await wait_until(lambda: engine.notifier.state == "unavailable", timeout=10)
        job = await engine.enqueue("scripted", {})
        await wait_until(lambda: recorder.runs[job.id] == 1, timeout=5)  # found by polling
    assert engine.healthy and engine.health()["listener"] == "unavailable"
    assert len([e for e in logs if e["event"].startswith("LISTEN/NOTIFY is not available")]) == 1


async def test_jobs_and_listener_restarts_leave_no_tasks_behind(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(scripted_registry(recorder), queues={"default": {"concurrency": 20}})
    await wait_until(lambda: engine.notifier.connected)
    baseline = len(asyncio.all_tasks())
    conn = await asyncpg.connect(pg_url)
    try:
        for _ in range(3):
            old = await kill_listener(conn, schema)
            await wait_until(lambda old=old: _replaced(conn, schema, old))
            jobs = await engine.enqueue_many([{"jobType": "scripted", "data": {}}] * 200)
            await wait_until(lambda jobs=jobs: all(recorder.runs[job.id] == 1 for job in jobs), timeout=20)
        await wait_until(lambda: engine.acker.pending == 0 and engine.notifier.connected)
    finally:
        await conn.close()
    assert len(asyncio.all_tasks()) <= baseline
