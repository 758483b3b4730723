"""The Definitions pages at scale: 1,000 definitions and millions of jobs (issue 14).

Fills a scratch schema with ``definitions`` cron definitions and ``jobs`` jobs, of which
``share`` carry a definition (finished, as a history), the rest plain; ANALYZEs; then
serves the dashboard and times, over HTTP, the definitions page, a definition's detail
page (document, next 5 runs, a page of its history), and ``GET /api/definitions/{name}/runs``.
Prints p50 and p95 of ``requests`` calls each.

Example::

    .venv/bin/python -m bench.definition_reads postgresql://postgres@127.0.0.1:5432/bench --jobs 5000000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import asyncpg

from engine.core.config import build_config
from engine.engine import Engine
from engine.web import serve

SCHEMA = "bench_definition_reads"
TOKEN = "bench-token-0123456789abcdef0123"
FILL_DEFINITIONS = """
INSERT INTO "{schema}".cron_entries (name, schedule, timezone, job, description, tags, source, trigger_type,
                                     runs_total, runs_completed, runs_failed)
SELECT 'definition-' || lpad(i::text, 4, '0'), (i % 60) || ' ' || (i % 24) || ' * * *',
       (ARRAY['UTC', 'Asia/Seoul', 'Europe/Berlin'])[1 + i % 3],
       jsonb_build_object('jobType', (ARRAY['ssh', 'http', 'mail', 'log'])[1 + i % 4],
                          'data', jsonb_build_object('host', '{{{{server}}}}', 'command', 'run ' || i)),
       'bench definition ' || i, ARRAY['tag' || (i % 10)], 'runtime', 'cron', 1000, 990, 10
FROM generate_series(1, $1) AS i
"""
# One chunk of jobs: every `share`-th one belongs to a definition (its history), the rest are plain.
FILL_JOBS = """
INSERT INTO "{schema}".jobs (queue, kind, args, meta, state, attempt, attempted_at, completed_at, discarded_at,
                             errors)
SELECT 'default', 'ssh', jsonb_build_object('n', i),
       CASE WHEN i % $3::int = 0
            THEN jsonb_build_object('definition', 'definition-' || lpad((1 + (i / $3::int) % $4::int)::text, 4, '0'))
            ELSE '{{}}' END,
       CASE WHEN i % 97 = 0 THEN 'discarded' ELSE 'completed' END, 1,
       now() - make_interval(secs => i % 864000) - interval '40 seconds', now() - make_interval(secs => i % 864000),
       CASE WHEN i % 97 = 0 THEN now() - make_interval(secs => i % 864000) END,
       CASE WHEN i % 97 = 0 THEN '[{{"kind": "error", "error": "exit status 1\\nmore"}}]'::jsonb ELSE '[]' END
FROM generate_series($1::bigint, $2::bigint) AS i
"""


async def fill(url: str, definitions: int, jobs: int, share: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        async with Engine(config=build_config({"database_url": url, "schema": SCHEMA})):
            pass  # migrates
        await conn.execute(FILL_DEFINITIONS.format(schema=SCHEMA), definitions)
        started = time.perf_counter()
        for low in range(1, jobs + 1, 500_000):
            await conn.execute(FILL_JOBS.format(schema=SCHEMA), low, min(jobs, low + 499_999), share, definitions)
            print(f"  {min(jobs, low + 499_999):,} jobs ({time.perf_counter() - started:.0f} s)", flush=True)
        await conn.execute(f'VACUUM ANALYZE "{SCHEMA}".jobs')
        await conn.execute(f'ANALYZE "{SCHEMA}".cron_entries')
    finally:
        await conn.close()


async def timed(http: aiohttp.ClientSession, url: str, requests: int) -> tuple[float, float]:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200, (url, response.status, await response.text())
            await response.read()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--definitions", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=5_000_000)
    parser.add_argument("--share", type=int, default=2, help="every SHARE-th job belongs to a definition")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="reuse the filled schema of a previous run")
    args = parser.parse_args()
    if not args.keep:
        await fill(args.url, args.definitions, args.jobs, args.share)
    config = build_config({"database_url": args.url, "schema": SCHEMA, "dashboard": {"token": TOKEN}})
    async with Engine(config=config) as engine, serve(engine, bind="127.0.0.1:0") as server, \
            aiohttp.ClientSession() as http:
        name = "definition-0500"
        for label, path in (("definitions page", "/definitions"), ("definition page + history", f"/definitions/{name}"),
                            ("history page 2", f"/definitions/{name}?before=4000000"),
                            ("API runs", f"/api/definitions/{name}/runs?limit=50"),
                            ("API definitions", "/api/definitions")):
            await timed(http, server.url + path, 3)  # warm up
            p50, p95 = await timed(http, server.url + path, args.requests)
            print(f"{label:28s} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
