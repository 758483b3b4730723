"""Handlers for the scale-out test and benchmark: each run of a job writes one ledger row.

Engine processes import this module through the config (``modules = ["tests.deploy.ledger_jobs"]``).
The ledger is the test's independent witness of what really ran: one row per handler run
(job id, attempt, process id, start and finish times, how many jobs of the same queue this
process was running when it started). The row is written before the handler returns, so a
job the engine records as completed always has its row.

Example::

    await create_ledger(conn, "jobengine")
    # ... processes run ``ledger.work`` jobs ...
    rows = await conn.fetch('SELECT * FROM "jobengine".ledger')
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import asyncpg

from engine.core.config import Config
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.registry import handler
from engine.db.sql import quote_ident

LEDGER_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.ledger (
    job_id      bigint NOT NULL,
    attempt     int NOT NULL,
    kind        text NOT NULL,
    queue       text NOT NULL,
    pid         int NOT NULL,
    started     double precision NOT NULL,
    finished    double precision NOT NULL,
    in_process  int NOT NULL,
    slot        timestamptz
)"""
LEDGER_INSERT = """
INSERT INTO {schema}.ledger (job_id, attempt, kind, queue, pid, started, finished, in_process, slot)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""

# Jobs of each queue this process is running right now.
_running: Counter[str] = Counter()


async def create_ledger(conn: asyncpg.Connection, schema: str) -> None:
    """Create the schema (if needed) and its ledger table."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.execute(LEDGER_TABLE.format(schema=quote_ident(schema)))


@asynccontextmanager
async def ledger_pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    """A small pool per engine process, apart from the engine's own (counted in connections)."""
    async with asyncpg.create_pool(config.database_url, min_size=1, max_size=3) as pool:
        yield pool


async def _record(job: Job, ctx: HandlerContext, started: float, in_process: int, slot: Any = None) -> None:
    pool = await ctx.resources.get(ledger_pool)
    statement = LEDGER_INSERT.format(schema=quote_ident(ctx.config.schema_name))
    await pool.execute(statement, job.id, job.attempt, job.kind, job.queue, os.getpid(), started,
                       time.time(), in_process, slot)


@handler("ledger.work", max_attempts=5)
async def work(job: Job, ctx: HandlerContext) -> None:
    """Optionally sleep ``args["sleep"]`` seconds, then write the ledger row."""
    started = time.time()
    _running[job.queue] += 1
    in_process = _running[job.queue]
    try:
        sleep = float(job.args.get("sleep", 0))
        if sleep:
            await anyio.sleep(sleep)
        await _record(job, ctx, started, in_process)
    finally:
        _running[job.queue] -= 1


@handler("ledger.cron", max_attempts=5)
async def cron_tick(job: Job, ctx: HandlerContext) -> None:
    """A cron-inserted job: records the slot it was inserted for (``meta["cron_slot"]``)."""
    started = time.time()
    slot = job.meta.get("cron_slot")
    await _record(job, ctx, started, 1, slot=datetime.fromisoformat(slot) if slot else None)


@handler("ledger.noop", max_attempts=5)
async def noop(job: Job) -> None:
    """Nothing but an optional ``args["sleep"]``: the benchmark measures the engine."""
    sleep = float(job.args.get("sleep", 0))
    if sleep:
        await anyio.sleep(sleep)
