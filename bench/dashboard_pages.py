"""Every dashboard page and API read at scale, over real HTTP (issue: p95 under 150 ms at
10,000,000 jobs, a search by args path under 300 ms).

Fills one schema with ``rows`` jobs shaped like a long-running installation (mostly finished,
a backlog, scheduled and retrying jobs, a few running, runs of saved definitions, tags, errors),
analyses it, starts an insert-only engine with the dashboard on it, and requests each page
``reads`` times with a bearer token (the admin's view: every page may be read). Prints p50,
p95 and max per page and writes the raw timings as JSON (``--out``).

Example::

    .venv/bin/python -m bench.dashboard_pages --rows 1000000          # ~3 min on 2 cores
    .venv/bin/python -m bench.dashboard_pages --rows 10000000 --out bench/raw/dashboard_pages/10m.json
    .venv/bin/python -m bench.dashboard_pages --url postgresql://postgres@127.0.0.1/postgres --reuse --rows 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.server import BenchServer, with_database
from engine.core.accounts import AuditEntry
from engine.core.config import Config
from engine.db import sql
from engine.db.migrate import migrate
from engine.engine import Engine
from engine.web.server import serve
from engine.web.users import add_user, new_token_for

SCHEMA = "dash_pages"
TOKEN = "bench-dashboard-token-0123456789abcdef"
TARGET_PAGE_P95_MS = 150.0
TARGET_SEARCH_P95_MS = 300.0

# i's residue picks the state: 0.2 % discarded (with an error), 0.1 % cancelled, 0.2 %
# available (the backlog), 0.05 % scheduled in the future, 0.01 % retryable, 0.001 % executing;
# the rest completed. One job in 1,000 is a run of one of 10 saved definitions.
FILL = """
INSERT INTO {schema}.jobs (queue, kind, args, meta, state, attempt, scheduled_at, inserted_at, attempted_at,
                           attempted_by, completed_at, cancelled_at, discarded_at, errors, tags)
SELECT CASE WHEN i % 10 = 0 THEN 'mail' WHEN i % 10 = 1 THEN 'ssh' ELSE 'default' END,
       'k' || (i % 20),
       jsonb_build_object('to', 'user' || i || '@example.com', 'n', i,
                          'data', jsonb_build_object('userId', i % 1000)),
       CASE WHEN i % 1000 = 7 THEN jsonb_build_object('definition', 'report-' || (i / 1000 % 10)) ELSE '{}' END,
       s.state,
       CASE WHEN s.state IN ('available', 'scheduled') THEN 0 ELSE 1 END,
       CASE WHEN s.state = 'scheduled' THEN now() + interval '1 day' ELSE t END, t,
       CASE WHEN s.state NOT IN ('available', 'scheduled') THEN t + interval '20 ms' END,
       CASE WHEN s.state NOT IN ('available', 'scheduled') THEN 'bench-node' END,
       CASE WHEN s.state = 'completed' THEN t + interval '60 ms' END,
       CASE WHEN s.state = 'cancelled' THEN t + interval '60 ms' END,
       CASE WHEN s.state = 'discarded' THEN t + interval '60 ms' END,
       CASE WHEN s.state IN ('discarded', 'retryable')
            THEN '[{"error": "connect: timed out", "kind": "error", "attempt": 1}]'::jsonb ELSE '[]' END,
       CASE WHEN i % 100 = 0 THEN ARRAY['vip'] ELSE '{}' END
FROM generate_series($1::bigint, $2::bigint) AS i,
     LATERAL (SELECT now() - ($3::bigint - i) * interval '50 ms' AS t) AS clock,
     LATERAL (SELECT CASE WHEN i % 500 = 3 THEN 'discarded' WHEN i % 1000 = 5 THEN 'cancelled'
                          WHEN i % 500 = 11 THEN 'available' WHEN i % 2000 = 13 THEN 'scheduled'
                          WHEN i % 10000 = 17 THEN 'retryable' WHEN i % 100000 = 19 THEN 'executing'
                          ELSE 'completed' END AS state) AS s
"""


def pages(rows: int, job_id: int) -> dict[str, tuple[str, str]]:
    """name -> (kind, path); kind 'search' is held to the search target, the rest to the page's."""
    rare = rows // 2
    return {
        "overview": ("page", "/"),
        "overview fragment (live)": ("page", "/partials/overview"),
        "jobs: newest": ("page", "/jobs"),
        "jobs: discarded": ("page", "/jobs?state=discarded"),
        "jobs: queue mail, completed": ("page", "/jobs?queue=mail&state=completed"),
        "jobs: available, oldest first": ("page", "/jobs?state=available&order=oldest"),
        "jobs: kind k3": ("page", "/jobs?kind=k3"),
        "jobs: page 100 back (before=)": ("page", f"/jobs?before={max(1, rows - 5000)}"),
        "jobs fragment (live)": ("page", "/partials/jobs"),
        "job detail": ("page", f"/jobs/{job_id}"),
        "definitions": ("page", "/definitions"),
        "definition runs": ("page", "/definitions/report-3"),
        "cron": ("page", "/cron"),
        "nodes": ("page", "/nodes"),
        "audit": ("page", "/audit"),
        "users": ("page", "/users"),
        "api: stats": ("page", "/api/stats"),
        "api: queues": ("page", "/api/queues"),
        "api: jobs newest": ("page", "/api/jobs?limit=50"),
        "api: charts 1h": ("page", "/api/charts?range=1h"),
        "api: charts 24h": ("page", "/api/charts?range=24h"),
        "api: charts 7d": ("page", "/api/charts?range=7d"),
        "api: nodes": ("page", "/api/nodes"),
        "metrics": ("page", "/metrics"),
        "search: id:N": ("search", f"/jobs?q=id:{rare}"),
        "search: args.to:VALUE": ("search", f"/jobs?q=args.to:user{rare}@example.com"),
        "search: args.data.userId:7": ("search", "/jobs?q=args.data.userId:7"),
        "search: args.to + kind": ("search", f"/jobs?q=args.to:user{rare}@example.com+kind:k{rare % 20}"),
        "search: tag:vip state:completed": ("search", "/jobs?q=tag:vip+state:completed"),
        "search: definition:report-3": ("search", "/jobs?q=definition:report-3"),
        'search: error:"timed out"': ("search", "/jobs?q=error:%22timed+out%22"),
        "search: bare word, absent": ("search", "/jobs?q=no-such-text"),
        "api search: args.to:VALUE": ("search", f"/api/jobs?q=args.to:user{rare}@example.com"),
    }


async def fill(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    quoted = sql.quote_ident(SCHEMA)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        await migrate(conn, SCHEMA)
        began = time.perf_counter()
        chunk = 500_000
        for start in range(1, rows + 1, chunk):
            await conn.execute(FILL.replace("{schema}", quoted), start, min(rows, start + chunk - 1), rows)
            print(f"  filled {min(rows, start + chunk - 1):,} of {rows:,} ({time.perf_counter() - began:.0f} s)",
                  flush=True)
        for number in range(10):
            await conn.execute(
                f"INSERT INTO {quoted}.cron_entries (name, trigger_type, schedule, job, source, description) "
                "VALUES ($1, 'cron', '0 3 * * *', $2::jsonb, 'runtime', 'nightly report') ON CONFLICT DO NOTHING",
                f"report-{number}", json.dumps({"jobType": "log", "data": {"message": "report"}}))
        await conn.execute(f"VACUUM ANALYZE {quoted}.jobs")
        print(f"filled and analysed {rows:,} jobs in {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await conn.close()


async def catch_up_rollup(url: str) -> None:
    """What a processing node's rollup service does over time (an hour of jobs per pass):
    the charts and the overview read finished minutes from job_rollup."""
    conn = await asyncpg.connect(url)
    try:
        statement, began, passes = sql.render(SCHEMA).ROLLUP_FINISHED, time.perf_counter(), 0
        while (await conn.fetchrow(statement, None, timeout=300))["behind"]:
            passes += 1
        await conn.execute(f"ANALYZE {sql.quote_ident(SCHEMA)}.job_rollup")  # as autovacuum soon would
        print(f"rollup caught up in {passes + 1} passes, {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await conn.close()


async def measure(url: str, rows: int, reads: int) -> dict[str, Any]:
    config = Config.model_validate({"database_url": url, "schema": SCHEMA, "query_timeout": 30,
                                    "dashboard": {"token": TOKEN}})
    results: dict[str, Any] = {}
    async with Engine(config=config) as engine:
        def audit_as(action: str, target: str | None, **details: Any) -> AuditEntry:
            return AuditEntry("bench", "cli", action, target, details)

        store = engine.store
        assert store is not None
        if await store.user_get("bench-admin") is None:  # --reuse: added by an earlier run
            await add_user(store, audit_as, "bench-admin", "admin", can_view_args=True)
        admin_token = await new_token_for(store, audit_as, "bench-admin", "bench")
        conn = await asyncpg.connect(url)
        try:
            job_id = await conn.fetchval(f"SELECT max(id) - 1234 FROM {sql.quote_ident(SCHEMA)}.jobs")
        finally:
            await conn.close()
        async with serve(engine, bind="127.0.0.1:0") as server, aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {admin_token}", "Accept": "text/html,application/json"}) as http:
            print(f"  {'page':36} {'first':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target", flush=True)
            for name, (kind, path) in pages(rows, job_id).items():
                times = []
                for read in range(reads + 1):
                    started = time.perf_counter()
                    async with http.get(server.url + path) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise SystemExit(f"{name}: {path} answered {response.status}: {body[:300]!r}")
                    if read:  # the first read warms caches and prepared statements
                        times.append((time.perf_counter() - started) * 1000)
                    else:
                        first = (time.perf_counter() - started) * 1000
                times.sort()
                p95 = times[max(0, int(0.95 * len(times)) - 1)] if len(times) >= 20 else times[-1]
                target = TARGET_SEARCH_P95_MS if kind == "search" else TARGET_PAGE_P95_MS
                results[name] = {"path": path, "kind": kind, "first_ms": round(first, 2),
                                 "ms": [round(t, 2) for t in times],
                                 "p50": round(statistics.median(times), 2), "p95": round(p95, 2),
                                 "max": round(times[-1], 2), "target_p95": target, "met": p95 <= target}
                print(f"  {name:36} {first:8.1f} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f}  "
                      f"{'ok' if p95 <= target else 'OVER'} ({target:.0f})", flush=True)
    return results


async def _main(url: str, args: argparse.Namespace) -> dict[str, Any]:
    if not args.reuse:
        await fill(url, args.rows)
    await catch_up_rollup(url)
    return await measure(url, args.rows, args.reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs in the table")
    parser.add_argument("--reads", type=int, default=20, help="timed reads per page (after one warm-up)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --url: read the table an earlier run filled there (same --rows)")
    parser.add_argument("--out", type=Path, help="write the raw timings here as JSON")
    parser.add_argument("--url", help="a Postgres to use (default: a dedicated embedded server, kept with --reuse)")
    args = parser.parse_args()
    if args.reuse and not args.url:
        parser.error("--reuse needs --url (the embedded server is new each run)")
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    with server:
        print(server.description, flush=True)
        began = time.time()
        database = "bench_dashboard_pages"
        url = with_database(server.url, database) if args.reuse else server.create_database(database)
        results = asyncio.run(_main(url, args))
    over = [name for name, r in results.items() if not r["met"]]
    print(f"{len(results) - len(over)} of {len(results)} reads within target" + (f"; over: {over}" if over else ""))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "rows": args.rows, "reads": args.reads, "server": server.description, "started": began,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
            "pages": results}, indent=1) + "\n")
        print(f"raw timings: {args.out}")


if __name__ == "__main__":
    main()
