"""The physical limits: pgbench running the simplest claim+complete SQL a Postgres job
queue can do, on the same server, so every engine figure can be read as a fraction of it;
and the latency floor: a bare asyncpg listener that claims on NOTIFY, with no engine.

The table has only what a claim needs (id, state, payload) and the one partial index the
claim reads. One pgbench transaction = two statements, each its own commit, like a real
worker: claim ``batch`` available rows (``FOR UPDATE SKIP LOCKED``), then mark exactly
those rows completed. Jobs/s = rows completed / seconds. No Python, no handler, no
per-job bookkeeping: what is left is Postgres's own cost per job.

The SQL floor (:func:`sql_floor`) runs jobengine's own claim and completion statements on its
own schema the same way, from a bare asyncpg loop: between it and the pgbench limit lies the
cost of jobengine's table (its columns, indexes and fences); between it and the engine's
drain lies the cost of the Python engine.

The latency floor (:func:`latency_floor`) is the enqueue->start path with nothing but
asyncpg: the producer inserts one row and NOTIFYs in one statement; a listener process
(``python -m bench.limit floor-worker URL``) wakes on the notification, claims with one
UPDATE ... RETURNING and reports. On a 2-core machine most of it is process wake-ups.

Example::

    limit = run_limit(server, batch=32, clients=(1, 2, 4), seconds=10)
    own_sql = await sql_floor(server, jobs=20_000)
    floor = await latency_floor(server, samples=300)
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.server import BenchServer, pg_bin

SETUP = """
DROP TABLE IF EXISTS limit_jobs;
CREATE TABLE limit_jobs (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state   text  NOT NULL DEFAULT 'available',
    payload jsonb NOT NULL DEFAULT '{{}}'
);
INSERT INTO limit_jobs (payload) SELECT jsonb_build_object('i', i) FROM generate_series(1, {rows}) AS i;
CREATE INDEX limit_jobs_available ON limit_jobs (id) WHERE state = 'available';
VACUUM ANALYZE limit_jobs;
CHECKPOINT;
"""

SCRIPT = """
WITH picked AS (
    SELECT id FROM limit_jobs WHERE state = 'available' ORDER BY id LIMIT {batch} FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE limit_jobs AS j SET state = 'executing' FROM picked WHERE j.id = picked.id RETURNING j.id
)
SELECT coalesce(array_agg(id), '{{}}') AS ids FROM claimed \\gset
UPDATE limit_jobs SET state = 'completed' WHERE id = ANY (:ids::bigint[]);
"""


def run_limit(server: BenchServer, *, batch: int = 32, clients: tuple[int, ...] = (1, 2, 4),
              seconds: float = 5.0, rows: int = 1_000_000) -> dict[str, Any]:
    """pgbench at each client count; the best is the limit. Rows are re-seeded per run:
    enough that pgbench never runs dry (that would cap the rate), few enough that the table
    and its new row versions stay in the default 128 MB of shared buffers (at 1.5M rows
    the run turns into buffer eviction I/O and the "limit" drops to a fifth). The server's
    CPU per 1,000 jobs is recorded too (pgbench's own is not: it is no child of Postgres)."""
    url = server.create_database("bench_limit")
    runs = []
    for count in clients:
        server.psql(url, SETUP.format(rows=rows))
        cpu = server.cpu()
        cpu.mark()
        completed = _pgbench(url, batch, count, seconds)
        pg_cpu = cpu.seconds()
        if completed >= rows:
            raise RuntimeError(f"pgbench claimed all {rows:,} rows: raise `rows` to measure the limit")
        runs.append({"clients": count, "rate": completed / seconds, "pg_cpu_per_1k": pg_cpu / completed * 1000})
    best = max(runs, key=lambda r: r["rate"])
    return {"rate": best["rate"], "clients": best["clients"], "batch": batch, "pg_cpu_per_1k": best["pg_cpu_per_1k"],
            "runs": runs}


def _pgbench(url: str, batch: int, clients: int, seconds: float) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "claim_complete.sql"
        script.write_text(SCRIPT.format(batch=batch))
        result = subprocess.run(
            [str(pg_bin("pgbench")), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
             "-T", str(int(seconds)), "-f", str(script), url],
            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip()[-2000:]}")
    match = re.search(r"number of transactions actually processed: (\d+)", result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected pgbench output: {result.stdout[-2000:]}")
    completed = BenchServer.psql(url, "SELECT count(*) FROM limit_jobs WHERE state = 'completed'")
    return int(completed.strip())


async def sql_floor(server: BenchServer, *, jobs: int = 20_000, batch: int = 32) -> dict[str, Any]:
    """jobengine's own claim and completion statements (engine/db/sql.py) on its own schema, in a
    bare asyncpg loop with no engine: the next claim overlapped with the previous batch's
    completion on a second connection, as the engine's producer and acker do. What this
    reaches is the cost of jobengine's table and statements; the engine's drain divided by
    it is what the Python engine around them costs."""
    from engine.db import sql
    from engine.db.store import JobStore

    url = server.create_database("bench_sql_floor")
    queue = JobStore(url)
    await queue.migrate()
    statements = sql.render("jobengine")
    claim_conn, ack_conn = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await claim_conn.execute("""
            INSERT INTO jobengine.jobs (queue, kind, args)
            SELECT 'default', 'bench.noop', jsonb_build_object('i', i) FROM generate_series(1, $1::int) AS i""", jobs)
        await claim_conn.execute("VACUUM ANALYZE jobengine.jobs")
        await claim_conn.execute("CHECKPOINT")

        async def complete(claimed: list[asyncpg.Record]) -> None:
            if claimed:
                await ack_conn.fetch(statements.JOB_COMPLETE_IF_EXECUTING, [r["id"] for r in claimed],
                                     [r["attempt"] for r in claimed], [r["attempted_at"] for r in claimed],
                                     [None] * len(claimed))

        cpu = server.cpu()
        cpu.mark()
        claimed: list[asyncpg.Record] = []
        start = time.perf_counter()
        while True:
            claimed, _ = await asyncio.gather(
                claim_conn.fetch(statements.JOB_FETCH_AVAILABLE, "default", batch, "floor"), complete(claimed))
            if not claimed:
                break
        elapsed, pg_cpu = time.perf_counter() - start, cpu.seconds()
        done = await claim_conn.fetchval("SELECT count(*) FROM jobengine.jobs WHERE state = 'completed'")
    finally:
        await claim_conn.close()
        await ack_conn.close()
    if done != jobs:
        raise RuntimeError(f"sql floor completed {done} of {jobs} jobs")
    return {"rate": jobs / elapsed, "pg_cpu_per_1k": pg_cpu / jobs * 1000, "batch": batch}


FLOOR_SETUP = """
DROP TABLE IF EXISTS floor_jobs;
CREATE TABLE floor_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         state text NOT NULL DEFAULT 'available', args jsonb NOT NULL);
CREATE INDEX floor_jobs_available ON floor_jobs (id) WHERE state = 'available';
"""
FLOOR_INSERT = ("WITH i AS (INSERT INTO floor_jobs (args) VALUES ($1::jsonb) RETURNING 1) "
                "SELECT pg_notify('floor', '') FROM i")
FLOOR_CLAIM = """
WITH p AS (SELECT id FROM floor_jobs WHERE state = 'available' ORDER BY id LIMIT 32 FOR UPDATE SKIP LOCKED)
UPDATE floor_jobs AS j SET state = 'executing' FROM p WHERE j.id = p.id RETURNING j.args
"""


async def latency_floor(server: BenchServer, samples: int = 300, warmup: int = 20) -> dict[str, Any]:
    """Enqueue->start percentiles (ms) of the bare asyncpg listener, sent like the latency workload."""
    url = server.create_database("bench_floor")
    conn = await asyncpg.connect(url)
    await conn.execute(FLOOR_SETUP)
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.limit", "floor-worker", url,
                                                  stdout=asyncio.subprocess.PIPE)
    assert worker.stdout is not None
    try:
        await worker.stdout.readline()  # ready
        latencies = []
        for i in range(warmup + samples):
            await asyncio.sleep(0.01)
            await conn.execute(FLOOR_INSERT, json.dumps({"t": time.perf_counter()}))
            line = await asyncio.wait_for(worker.stdout.readline(), 10)
            if i >= warmup:
                latencies.append(json.loads(line)["lat"] * 1000)
    finally:
        worker.kill()
        await worker.wait()
        await conn.close()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


async def _floor_worker(url: str) -> None:
    conn, listener = await asyncpg.connect(url), await asyncpg.connect(url)
    wake = asyncio.Event()
    await listener.add_listener("floor", lambda *_: wake.set())
    print("ready", flush=True)
    while True:
        await wake.wait()
        wake.clear()
        rows = await conn.fetch(FLOOR_CLAIM)
        now = time.perf_counter()
        for row in rows:
            print(json.dumps({"lat": now - json.loads(row["args"])["t"]}), flush=True)


async def _sql_floor_experiment(argv: list[str]) -> None:
    """``python -m bench.limit sql-floor``: the SQL floor alone, on a dedicated server, in
    interleaved rounds over claim batch sizes and server settings (docs/performance.md)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.limit sql-floor", description=_sql_floor_experiment.__doc__)
    p.add_argument("--jobs", type=int, default=40_000)
    p.add_argument("--batch", default="32", help="comma-separated claim batch sizes")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE,VALUE",
                   help="a server setting to vary, e.g. synchronous_commit=on,off")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    variants: list[dict[str, str]] = [{}]
    for item in args.setting:
        name, _, values = item.partition("=")
        variants = [{**v, name: value} for v in variants for value in values.split(",")]
    with BenchServer.start() as server:
        for _ in range(args.rounds):
            for batch in (int(b) for b in args.batch.split(",")):
                for variant in variants:
                    server.psql(server.url, "".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in variant.items())
                                + "SELECT pg_reload_conf();")
                    result = await sql_floor(server, jobs=args.jobs, batch=batch)
                    label = ", ".join(f"{k}={v}" for k, v in variant.items()) or "defaults"
                    print(f"batch {batch:>3}, {label}: {result['rate']:>8,.0f} jobs/s, "
                          f"Postgres CPU {result['pg_cpu_per_1k'] * 1000:.1f} us/job", flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["floor-worker"]:
    import uvloop

    uvloop.run(_floor_worker(sys.argv[2]))
elif __name__ == "__main__" and sys.argv[1:2] == ["sql-floor"]:
    import uvloop

    uvloop.run(_sql_floor_experiment(sys.argv[2:]))
