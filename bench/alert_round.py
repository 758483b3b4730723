"""What one alert evaluation round costs at scale: six alerts (one per metric) over a jobs
table of ``--jobs`` rows, of which ``--waiting`` are available in 20 queues and the rest
finished, with a day of rollup. Prints p50 and p95 of ``--rounds`` rounds (one transaction
each, as a node runs it every alerts_interval; nothing per job).

Example::

    .venv/bin/python -m bench.alert_round postgresql://postgres@127.0.0.1:5432/bench --jobs 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from engine.core.config import build_config
from engine.engine import Engine
from engine.maintenance.alerts import Alerts
from engine.node import cron_missed_check

SCHEMA = "bench_alert_round"
ALERTS = [
    {"name": "backlog", "metric": "backlog", "threshold": 1000},
    {"name": "backlog-q7", "metric": "backlog", "queue": "q7", "threshold": 1000},
    {"name": "oldest", "metric": "oldest_waiting", "threshold": "10m"},
    {"name": "failures", "metric": "failure_rate", "threshold": 0.1, "window": "1h"},
    {"name": "orphans", "metric": "no_consumer"},
    {"name": "cron", "metric": "cron_missed"},
    {"name": "lost", "metric": "node_lost"},
]


async def fill(url: str, jobs: int, waiting: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'TRUNCATE "{SCHEMA}".jobs, "{SCHEMA}".job_rollup')
        for start in range(0, jobs, 500_000):
            await conn.execute(
                f'INSERT INTO "{SCHEMA}".jobs (queue, kind, state, attempt, attempted_at, completed_at, '
                "discarded_at, scheduled_at) SELECT 'q' || (n % 20), 'log', "
                "CASE WHEN n <= $3 THEN 'available' WHEN n % 50 = 0 THEN 'discarded' ELSE 'completed' END, 1, "
                "now(), CASE WHEN n > $3 AND n % 50 <> 0 THEN now() END, "
                "CASE WHEN n > $3 AND n % 50 = 0 THEN now() END, now() - make_interval(secs => n % 600) "
                "FROM generate_series($1::int, $2::int) AS n", start + 1, min(jobs, start + 500_000), waiting)
        await conn.execute(
            f'INSERT INTO "{SCHEMA}".job_rollup (minute, queue, kind, completed, discarded, wait_hist, run_hist) '
            "SELECT date_trunc('minute', now()) - make_interval(mins => m), 'q' || q, 'log', 100, 2, '{}', '{}' "
            "FROM generate_series(0, 1439) AS m, generate_series(0, 19) AS q")
        await conn.execute(f'VACUUM ANALYZE "{SCHEMA}".jobs')  # as autovacuum would have
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--waiting", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=50)
    options = parser.parse_args()
    config = build_config({"database_url": options.url, "schema": SCHEMA, "alerts": ALERTS,
                           "dashboard": {"enabled": False}, "logging": {"level": "warning"}})
    async with Engine(config=config) as engine:  # insert-only: it evaluates nothing by itself
        assert engine.store is not None
        await fill(options.url, options.jobs, options.waiting)
        alerts = Alerts(engine.store, engine.config, engine.inserter, node="bench", interval=0.0,
                        missed_slot=cron_missed_check())
        times = []
        for _ in range(options.rounds):
            started = time.perf_counter()
            await alerts.evaluate_once()
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(f"{options.jobs:,} jobs ({options.waiting:,} waiting), {len(ALERTS)} alerts: one round "
          f"p50 {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95) - 1]:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
