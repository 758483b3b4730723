"""How the dashboard's reads hold up with 1,000,000 jobs (not part of the test suite).

    JOBENGINE_TEST_DATABASE_URL=postgresql://... .venv/bin/python -m tests.web.bench_dashboard [ROWS]

Fills a scratch schema (mostly completed jobs over the last day, plus waiting, failed and
running ones), ANALYZEs it, then prints the median time of each read the dashboard makes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg

from engine.core.config import build_config
from engine.engine import Engine
from engine.web.actions import JobFilter, list_jobs
from engine.web.snapshot import Snapshots

FILL = """
INSERT INTO "{schema}".jobs (queue, kind, args, state, priority, attempt, scheduled_at, attempted_at,
                             completed_at, discarded_at, tags, errors, meta)
SELECT (ARRAY['default', 'mail', 'media'])[1 + i % 3], 'kind' || (i % 12),
       jsonb_build_object('user', i, 'email', 'user' || i || '@example.com'),
       s.state, i % 3, 1, now() - make_interval(secs => i % 86400),
       now() - make_interval(secs => i % 86400) + interval '1 second',
       CASE WHEN s.state = 'completed' THEN now() - make_interval(secs => i % 86400) + interval '2 seconds' END,
       CASE WHEN s.state = 'discarded' THEN now() - make_interval(secs => i % 86400) + interval '2 seconds' END,
       CASE WHEN i % 100 = 0 THEN ARRAY['vip'] ELSE '{{}}' END,
       CASE WHEN s.state = 'discarded' THEN '[{{"kind": "error", "error": "boom"}}]'::jsonb ELSE '[]' END,
       CASE WHEN i % 1000 = 0 THEN jsonb_build_object('parent_id', i - 1) ELSE '{{}}' END
FROM generate_series(1, $1) AS i,
     LATERAL (SELECT CASE WHEN i % 100 = 1 THEN 'available' WHEN i % 200 = 2 THEN 'scheduled'
                          WHEN i % 50 = 3 THEN 'discarded' WHEN i % 20000 = 4 THEN 'executing'
                          WHEN i % 1000 = 5 THEN 'retryable' ELSE 'completed' END AS state) AS s
"""


async def timed(name: str, read: Callable[[], Awaitable[Any]], runs: int = 5) -> None:
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        await read()
        took.append((time.perf_counter() - start) * 1000)
    print(f"{name:<44} {statistics.median(took):8.1f} ms   (max {max(took):.1f})")


async def main(rows: int) -> None:
    url = os.environ["JOBENGINE_TEST_DATABASE_URL"]
    schema = "bench_dashboard"
    conn = await asyncpg.connect(url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()
    config = build_config({"database_url": url, "schema": schema, "dashboard": {"enabled": False}})
    async with Engine(config=config) as engine:
        queue = engine.store
        assert queue is not None
        start = time.perf_counter()
        async with queue.pool.acquire() as c:
            await c.execute(FILL.format(schema=schema), rows, timeout=600)
            await c.execute(f'VACUUM ANALYZE "{schema}".jobs', timeout=600)
        print(f"filled {rows:,} jobs in {time.perf_counter() - start:.1f} s")
        snapshots = Snapshots(engine, ttl=0, cap=10_000)
        await timed("overview (queues, capped counts, throughput)", snapshots.overview)
        await timed("queue names (loose index scan)", queue.dashboard_queue_names)
        await timed("counts per queue and state (cap 10,000)",
                    lambda: queue.dashboard_counts(["default", "mail", "media"], 10_000))
        await timed("throughput, last 60 minutes", lambda: queue.dashboard_throughput(60))
        for label, params in [("jobs: newest page", {}), ("jobs: state=discarded", {"state": "discarded"}),
                              ("jobs: state=retryable", {"state": "retryable"}),
                              ("jobs: queue=mail", {"queue": "mail"}), ("jobs: kind=kind7", {"kind": "kind7"}),
                              ("jobs: tag=vip", {"tag": "vip"}), ("jobs: deep page (before=500000)",
                                                                   {"before": "500000"}),
                              ("jobs: oldest first", {"order": "oldest"}),
                              ("jobs: text search (common)", {"q": "user42"}),
                              ("jobs: text search (absent)", {"q": "no-such-text"}),
                              ("jobs: state+kind+queue", {"state": "completed", "kind": "kind3", "queue": "media"})]:
            await timed(label, lambda p=params: list_jobs(engine, JobFilter.parse(p)))  # type: ignore[misc]
        await timed("job detail + children", lambda: _detail(queue))


async def _detail(queue: Any) -> None:
    await queue.dashboard_job(999)
    await queue.dashboard_children(999)


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
