"""Postgres cost of one job's claim and completion, with 001's full operator indexes
("full") and with migration 005's partial ones ("lean"): performance issue 9.

Each variant gets a fresh schema migrated by the engine; "full" then puts 001's indexes
back (queue/state, kind, tags on every row; executing jobs by node). ``jobs`` available
jobs are inserted (plus ``history`` completed ones: a table that has been running a
while), vacuumed, analyzed and checkpointed; autovacuum is off for the table so both
variants see the same dead entries. Then, until none is left: claim ``batch`` jobs with
the engine's JOB_FETCH_AVAILABLE on one connection, complete them with its completion
statement on another. Each connection runs only its own statement, so its backend's CPU
time (psutil) is that statement's Postgres cost; WAL bytes and records come from the
server's LSN and from EXPLAIN (ANALYZE, BUFFERS, WAL) of one claim. Variants alternate
for ``rounds`` rounds; the median is printed.

Example::

    .venv/bin/python -m bench.index_cost                       # 50,000 jobs, 3 rounds, ~1 min
    .venv/bin/python -m bench.index_cost --history 1000000 --rounds 1 --show-plan
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil

from bench.server import BenchServer
from engine.db import sql
from engine.db.migrate import migrate

# 001's operator indexes, as they were before 005.
FULL_INDEXES = """
CREATE INDEX jobs_queue_state_idx ON {schema}.jobs (queue, state, id DESC);
CREATE INDEX jobs_kind_idx ON {schema}.jobs (kind, id DESC);
CREATE INDEX jobs_tags_idx ON {schema}.jobs USING gin (tags);
CREATE INDEX jobs_executing_idx ON {schema}.jobs (attempted_by) WHERE state = 'executing';
DROP INDEX {schema}.jobs_queue_listing_idx, {schema}.jobs_kind_listing_idx, {schema}.jobs_tagged_listing_idx,
           {schema}.jobs_executing_queue_idx;
"""

FILL = """
INSERT INTO {schema}.jobs (queue, kind, args, state, attempt, attempted_at, completed_at)
SELECT 'default', 'bench' || (i % 5), jsonb_build_object('i', i),
       CASE WHEN i <= $1 THEN 'completed' ELSE 'available' END,
       CASE WHEN i <= $1 THEN 1 ELSE 0 END,
       CASE WHEN i <= $1 THEN now() END, CASE WHEN i <= $1 THEN now() END
FROM generate_series(1, $1::int + $2::int) AS i
"""


@dataclass
class Result:
    variant: str
    jobs: int = 0
    cpu: dict[str, float] = field(default_factory=lambda: {"claim": 0.0, "complete": 0.0})
    wall: dict[str, float] = field(default_factory=lambda: {"claim": 0.0, "complete": 0.0})
    wal: dict[str, int] = field(default_factory=lambda: {"claim": 0, "complete": 0})
    plan: dict[str, Any] = field(default_factory=dict)

    def per_job(self, what: dict[str, Any], step: str, scale: float = 1e6) -> float:
        return what[step] * scale / max(1, self.jobs)


async def _prepare(url: str, variant: str, jobs: int, history: int) -> str:
    schema = f"index_cost_{variant}"
    quoted = sql.quote_ident(schema)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        await migrate(conn, schema)
        if variant == "full":
            await conn.execute(FULL_INDEXES.replace("{schema}", quoted))
        await conn.execute(FILL.replace("{schema}", quoted), history, jobs)
        await conn.execute(f"ALTER TABLE {quoted}.jobs SET (autovacuum_enabled = false)")
        await conn.execute(f"VACUUM ANALYZE {quoted}.jobs")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return schema


async def _explain_claim(conn: asyncpg.Connection, statement: str, batch: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of one claim, rolled back."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + statement,
                                  "default", batch, "bench-node")
        text = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, WAL) " + statement, "default", batch, "bench-node")
    finally:
        await transaction.rollback()
    top = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    return {"ms": top["Execution Time"], "wal_records": top["Plan"].get("WAL Records"),
            "wal_bytes": top["Plan"].get("WAL Bytes"), "text": "\n".join(r[0] for r in text)}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _lsn(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'"))


async def _drain(url: str, schema: str, variant: str, batch: int) -> Result:
    statements = sql.render(schema)
    complete = getattr(statements, "JOB_COMPLETE_IF_EXECUTING", None)
    claimer, completer, observer = [await asyncpg.connect(url) for _ in range(3)]
    result = Result(variant)
    try:
        result.plan = await _explain_claim(claimer, statements.JOB_FETCH_AVAILABLE, batch)
        backends = {"claim": psutil.Process(claimer.get_server_pid()),
                    "complete": psutil.Process(completer.get_server_pid())}
        start = {step: _cpu(p) for step, p in backends.items()}
        while True:
            lsn, began = await _lsn(observer), time.perf_counter()
            rows = await claimer.fetch(statements.JOB_FETCH_AVAILABLE, "default", batch, "bench-node")
            result.wall["claim"] += time.perf_counter() - began
            result.wal["claim"] += await _lsn(observer) - lsn
            if not rows:
                break
            args: list[Any] = [[r["id"] for r in rows], [r["attempt"] for r in rows],
                               [r["attempted_at"] for r in rows]]
            if complete is not None:
                text, args = complete, [*args, [None] * len(rows)]
            else:
                text = statements.JOB_SET_STATE_IF_EXECUTING
                args += [["completed"] * len(rows), [None] * len(rows), [None] * len(rows),
                         [0] * len(rows), [None] * len(rows)]
            lsn, began = await _lsn(observer), time.perf_counter()
            done = await completer.fetch(text, *args)
            result.wall["complete"] += time.perf_counter() - began
            result.wal["complete"] += await _lsn(observer) - lsn
            assert len(done) == len(rows), "every claimed job completes"
            result.jobs += len(rows)
        result.cpu = {step: _cpu(p) - start[step] for step, p in backends.items()}
    finally:
        for conn in (claimer, completer, observer):
            await conn.close()
    return result


def _report(results: list[Result], show_plan: bool) -> None:
    print(f"{'variant':8} {'step':9} {'cpu us/job':>10} {'wall us/job':>11} {'WAL B/job':>10}")
    for variant in ("full", "lean"):
        mine = [r for r in results if r.variant == variant]
        for step in ("claim", "complete"):
            cpu = statistics.median(r.per_job(r.cpu, step) for r in mine)
            wall = statistics.median(r.per_job(r.wall, step) for r in mine)
            wal = statistics.median(r.per_job(r.wal, step, scale=1) for r in mine)
            print(f"{variant:8} {step:9} {cpu:10.1f} {wall:11.1f} {wal:10.0f}")
        plan = mine[-1].plan
        print(f"{variant:8} EXPLAIN of one claim: {plan['ms']:.2f} ms, {plan['wal_records']} WAL records, "
              f"{plan['wal_bytes']} WAL bytes")
        if show_plan:
            print(plan["text"])


async def _run(url: str, args: argparse.Namespace) -> list[Result]:
    results = []
    for round_no in range(args.rounds):
        for variant in ("full", "lean") if round_no % 2 == 0 else ("lean", "full"):
            schema = await _prepare(url, variant, args.jobs, args.history)
            result = await _drain(url, schema, variant, args.batch)
            print(f"round {round_no + 1} {variant}: claim {result.per_job(result.cpu, 'claim'):.1f} us/job, "
                  f"complete {result.per_job(result.cpu, 'complete'):.1f} us/job (backend CPU)", flush=True)
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs to claim and complete per variant")
    parser.add_argument("--batch", type=int, default=100, help="jobs per claim and per completion")
    parser.add_argument("--history", type=int, default=0, help="completed jobs already in the table")
    parser.add_argument("--rounds", type=int, default=3, help="full/lean pairs, alternating order")
    parser.add_argument("--url", help="a Postgres to use (default: a dedicated embedded server)")
    parser.add_argument("--show-plan", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS, WAL)")
    args = parser.parse_args()
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    with server:
        print(server.description, flush=True)
        url = server.create_database("bench_index_cost")
        _report(asyncio.run(_run(url, args)), args.show_plan)


if __name__ == "__main__":
    main()
