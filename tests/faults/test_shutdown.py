"""SIGTERM drains: short jobs finish, long ones go back unspent, nothing new is claimed;
a second signal returns the unfinished jobs at once."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from engine.core.job import JobSpec
from tests.faults.conftest import job_rows
from tests.support.ledger import KIND, read_ledger, started_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

GRACE = 2.0
SHORT, LONG, WAITING = 10, 10, 30


async def start_mixed_load(spawn_engine, client, pg_url, schema, ledger_path):
    engine = await spawn_engine(pg_url, schema, shutdown_grace=GRACE,
                                queues={"default": {"concurrency": SHORT + LONG}})
    short = await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 1.0}, priority=2) for _ in range(SHORT)])
    long = await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 600}, priority=1) for _ in range(LONG)])
    waiting = await client.enqueue_many([JobSpec(kind=KIND, args={"sleep": 0}) for _ in range(WAITING)])
    await wait_until(lambda: len(started_ids(read_ledger(ledger_path))) >= SHORT + LONG, timeout=15)
    return engine, short, long, waiting


def assert_back_unspent(rows, jobs) -> None:
    for job in jobs:
        row = rows[job.id]
        assert (row["state"], row["attempt"], row["rescued"]) == ("available", 0, 0), dict(row)


async def test_sigterm_drains_then_returns_long_jobs_unspent(spawn_engine, client, pg_url, schema,
                                                             ledger_path) -> None:
    engine, short, long, waiting = await start_mixed_load(spawn_engine, client, pg_url, schema, ledger_path)
    signalled_at = engine.send(signal.SIGTERM)
    code = await engine.wait_exit(GRACE + 5)
    took = time.time() - signalled_at
    print(f"\nSIGTERM: exit {code} after {took:.2f}s (grace {GRACE}s)")
    assert code == 0
    assert took < GRACE + 2

    rows = await job_rows(pg_url, schema)
    assert all(rows[job.id]["state"] == "completed" and rows[job.id]["attempt"] == 1 for job in short)
    assert_back_unspent(rows, long)
    assert_back_unspent(rows, waiting)
    assert not started_ids(read_ledger(ledger_path), after=signalled_at), "a job was claimed after the signal"
    assert engine.logged("returned unfinished jobs to the queue")


async def test_second_signal_returns_unfinished_jobs_at_once(spawn_engine, client, pg_url, schema,
                                                             ledger_path) -> None:
    engine, short, long, waiting = await start_mixed_load(spawn_engine, client, pg_url, schema, ledger_path)
    engine.send(signal.SIGTERM)
    await engine.wait_logged("signal received")
    second_at = engine.send(signal.SIGINT)
    code = await engine.wait_exit(5)
    took = time.time() - second_at
    print(f"\nsecond signal: exit {code} after {took:.2f}s")
    assert code == 1
    assert took < 1.5

    rows = await job_rows(pg_url, schema)
    assert_back_unspent(rows, long + short)  # cancelled mid-run: back, the attempt not spent
    assert_back_unspent(rows, waiting)
    assert not [row for row in rows.values() if row["state"] == "executing"]


async def test_sigterm_while_waiting_for_the_database_stops_the_start_cleanly(spawn_engine, schema) -> None:
    """A worker waits for its database as long as it takes; a signal meanwhile ends the wait
    with exit 0 and says so, rather than the process dying of the signal (-15)."""
    with socket.socket() as closed:  # bound and never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/postgres"
        engine = await spawn_engine(url, schema, wait=False)
        await engine.wait_logged("database not available; retrying", timeout=30)
        engine.send(signal.SIGTERM)
        code = await engine.wait_exit(5)
    assert code == 0, engine.log_path.read_text()[-2000:]
    assert engine.logged("signal received while starting; stopping")
    assert not engine.logged("engine started")
    assert all(line.startswith("{") for line in engine.log_path.read_text().splitlines() if line.strip())
