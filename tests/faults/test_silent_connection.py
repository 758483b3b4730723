"""A database connection that goes silent (a TCP proxy black-holes it): nothing hangs, the
engine reports itself unhealthy, and it recovers by itself once traffic flows again."""

from __future__ import annotations

import signal
import time

import pytest

from engine.core.job import JobSpec
from engine.engine import Engine
from tests.faults.conftest import count_states, job_rows
from tests.support.ledger import KIND, finished_ids, read_ledger, started_ids
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

# Polling so slow that only the engine's own recovery can explain a prompt restart.
SETTINGS = {"query_timeout": 1, "poll_interval": 30, "shutdown_grace": 2,
            "lifeline": {"heartbeat_interval": 0.5, "rescue_after": 10}}


async def all_completed(url: str, schema: str, count: int) -> bool:
    return await count_states(url, schema) == {"completed": count}


async def test_silent_connection_hangs_nothing_and_recovers(spawn_engine, client, pg_url, schema,
                                                            ledger_path) -> None:
    async with TcpProxy.for_url(pg_url) as proxy:
        engine = await spawn_engine(proxy.url, schema, **SETTINGS)
        running = await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 1.0}) for _ in range(5)])
        await wait_until(lambda: len(started_ids(read_ledger(ledger_path))) == 5)

        silenced_at = time.time()
        proxy.blackhole()
        waiting = await client.enqueue_many([JobSpec(kind=KIND, args={}) for _ in range(20)])
        # Jobs finish meanwhile, their acks cannot land; heartbeats time out instead of hanging.
        await wait_until(lambda: len(finished_ids(read_ledger(ledger_path))) == 5, timeout=5)
        await wait_until(lambda: engine.logged("heartbeat failed"), timeout=10)
        await wait_until(lambda: engine.logged("ack write failed"), timeout=10)
        detected = engine.logged("heartbeat failed")[0]
        assert engine.alive

        restored_at = time.time()
        proxy.restore()
        await wait_until(lambda: len(started_ids(read_ledger(ledger_path))) == 25, timeout=15)
        resumed = min(e.at for e in read_ledger(ledger_path) if e.event == "start" and e.at > restored_at)
        await wait_until(lambda: all_completed(pg_url, schema, 25), timeout=15)
        landed = time.time()

        rows = await job_rows(pg_url, schema)
        assert max(started_ids(read_ledger(ledger_path)).values()) == 1
        # The running jobs' acks were held back, then landed: nothing was rescued or spent twice.
        assert all((rows[job.id]["attempt"], rows[job.id]["rescued"]) == (1, 0) for job in running)
        # A claim sent into the silence may reach Postgres once traffic flows, after the engine
        # gave up on it: such a job is rescued as unknown to its node, then runs once.
        lost = [job.id for job in waiting if rows[job.id]["rescued"]]
        assert all("did not know it held the job" in rows[job_id]["errors"] for job_id in lost)

        stop_at = engine.send(signal.SIGTERM)
        assert await engine.wait_exit(SETTINGS["shutdown_grace"] + 2) == 0
    print(f"\nsilent connection for {restored_at - silenced_at:.1f}s (first heartbeat failure logged at "
          f"{detected['timestamp']}); after traffic returned: first job started in {resumed - restored_at:.2f}s, "
          f"all acks landed and jobs done in {landed - restored_at:.2f}s ({len(lost)} lost claims); "
          f"SIGTERM exit in {time.time() - stop_at:.2f}s")
    assert resumed - restored_at < 3


async def test_sigterm_while_the_connection_is_silent_exits_in_bounded_time(spawn_engine, pg_url, schema) -> None:
    async with TcpProxy.for_url(pg_url) as proxy:
        engine = await spawn_engine(proxy.url, schema, **SETTINGS)
        proxy.blackhole()
        await engine.wait_logged("heartbeat failed")
        stop_at = engine.send(signal.SIGTERM)
        code = await engine.wait_exit(15)
        took = time.time() - stop_at
    print(f"\nSIGTERM with the database unreachable: exit {code} in {took:.2f}s")
    assert code == 0
    assert took < SETTINGS["shutdown_grace"] + 5 * SETTINGS["query_timeout"]


async def test_engine_reports_unhealthy_while_silent_and_healthy_again(make_config, pg_url) -> None:
    async with TcpProxy.for_url(pg_url) as proxy:
        config = make_config(database_url=proxy.url, query_timeout=0.5, queues={"default": {"concurrency": 1}},
                             lifeline={"heartbeat_interval": 0.2, "rescue_after": 5})
        async with Engine(config=config) as engine:
            await wait_until(lambda: engine.healthy)
            silenced_at = time.monotonic()
            proxy.blackhole()
            await wait_until(lambda: not engine.healthy, timeout=5)
            unhealthy_after = time.monotonic() - silenced_at
            await wait_until(lambda: not engine.health()["database"], timeout=5)  # heartbeats too old
            restored_at = time.monotonic()
            proxy.restore()
            await wait_until(lambda: engine.healthy, timeout=10)
            healthy_after = time.monotonic() - restored_at
    print(f"\nengine.healthy: False {unhealthy_after:.2f}s after the connection went silent, "
          f"True again {healthy_after:.2f}s after traffic returned (heartbeat 0.2s)")
    assert unhealthy_after < 2
