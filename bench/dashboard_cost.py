"""What the dashboard issue adds to Postgres, measured (migration 010):

1. ``args``: the GIN index jobs_args_idx on the hot path. bench.index_cost's drain (claim and
   complete ``jobs`` jobs in batches, one statement per connection, backend CPU by psutil,
   WAL by LSN) with the index ("gin") and without it ("none"), alternating for ``rounds``.
   The insert's cost is measured the same way (one INSERT ... SELECT of the jobs).
1b. ``tags``: the same for migration 012's tag index (btree) against 005's GIN one, every job tagged.
2. ``rollup``: backend CPU of the rollup statements per finished job, for ``finished`` jobs
   spread over the last hour and 5 queues x 10 kinds.
3. ``search``: a table of ``rows`` jobs (args ``{"to": "userN@example.com", "n": N}``), each
   search and page read 20 times through JobStore.dashboard_job_page; p50 and p95 in ms.

Example::

    .venv/bin/python -m bench.dashboard_cost                  # ~2 min on 2 cores
    .venv/bin/python -m bench.dashboard_cost --rows 10000000 --only search
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import psutil

from bench.index_cost import FILL, _cpu, _drain, _lsn
from bench.server import BenchServer
from engine.core.search import parse_query
from engine.db import sql
from engine.db.migrate import migrate
from engine.db.store import JobStore

DRAIN_CPU_US = 65.0  # README "Performance": worker + Postgres CPU per drained job


async def _fresh(url: str, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.execute(f"DROP SCHEMA IF EXISTS {sql.quote_ident(schema)} CASCADE")
    await migrate(conn, schema)
    return conn


IndexCosts = dict[str, list[float]]  # variant -> medians: insert CPU, insert WAL, claim+complete CPU, WAL


async def index_ab(url: str, jobs: int, rounds: int, variants: dict[str, str], fill: str,
                   fill_args: tuple[int, ...]) -> IndexCosts:
    """Postgres cost per job of two index set-ups, alternating for ``rounds``: each variant's
    fresh schema gets its SQL (``variants``: name -> statements, "" for none), then ``fill``
    (timed: the insert's cost) and the claim+complete drain of every job."""
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for round_no in range(rounds):
        for variant in names if round_no % 2 == 0 else names[::-1]:
            schema = f"dash_cost_{variant}"
            quoted = sql.quote_ident(schema)
            conn = await _fresh(url, schema)
            try:
                if variants[variant]:
                    await conn.execute(variants[variant].replace("{schema}", quoted))
                await conn.execute(f"ALTER TABLE {quoted}.jobs SET (autovacuum_enabled = false)")
                backend = psutil.Process(conn.get_server_pid())
                cpu, lsn = _cpu(backend), await _lsn(conn)
                await conn.execute(fill.replace("{schema}", quoted), *fill_args)
                insert_cpu, insert_wal = (_cpu(backend) - cpu) * 1e6 / jobs, (await _lsn(conn) - lsn) / jobs
                await conn.execute(f"VACUUM ANALYZE {quoted}.jobs")
                await conn.execute("CHECKPOINT")
            finally:
                await conn.close()
            drained = await _drain(url, schema, variant, 100)
            ack = drained.per_job(drained.cpu, "claim") + drained.per_job(drained.cpu, "complete")
            wal = drained.per_job(drained.wal, "claim", 1) + drained.per_job(drained.wal, "complete", 1)
            results[variant].append((insert_cpu, insert_wal, ack, wal))
            print(f"  round {round_no + 1} {variant}: insert {insert_cpu:.1f} us/job {insert_wal:.0f} B/job, "
                  f"claim+complete {ack:.1f} us/job {wal:.0f} B/job", flush=True)
    medians = {variant: [statistics.median(r[i] for r in rows) for i in range(4)] for variant, rows in results.items()}
    print("  (median)   insert CPU us/job  insert WAL B/job  claim+complete CPU us/job  WAL B/job")
    for variant, m in medians.items():
        print(f"  {variant:8} {m[0]:18.1f} {m[1]:17.0f} {m[2]:26.1f} {m[3]:10.0f}")
    return medians


async def args_index(url: str, jobs: int, rounds: int) -> None:
    print("args index (migration 010's GIN index on args, against none):")
    medians = await index_ab(url, jobs, rounds, {"none": "DROP INDEX {schema}.jobs_args_idx", "gin": ""},
                             FILL, (0, jobs))
    extra = (medians["gin"][0] + medians["gin"][2]) - (medians["none"][0] + medians["none"][2])
    print(f"  the index adds {extra:.1f} us of Postgres CPU per job (insert + claim + complete): "
          f"{100 * extra / DRAIN_CPU_US:.1f} % of the drain's {DRAIN_CPU_US:.0f} us/job")


TAGGED_FILL = """
INSERT INTO {schema}.jobs (queue, kind, args, tags)
SELECT 'default', 'bench' || (i % 5), jsonb_build_object('i', i), ARRAY['game-' || (i % 7), 'vip']
FROM generate_series(1, $1::int) AS i
"""


async def tag_index(url: str, jobs: int, rounds: int) -> None:
    """Migration 012: 005's GIN index on tags ("gin") against jobs_tagged_listing_idx
    ("btree"), for jobs that all carry tags (untagged jobs are in neither)."""
    print("tag index, every job tagged (005's GIN index against 012's btree):")
    await index_ab(url, jobs, rounds, {
        "gin": "DROP INDEX {schema}.jobs_tagged_listing_idx; CREATE INDEX jobs_tags_listing_idx ON {schema}.jobs "
               "USING gin (tags) WHERE cardinality(tags) <> 0 AND state <> 'executing'",
        "btree": ""}, TAGGED_FILL, (jobs,))


ROLLUP_FILL = """
INSERT INTO {schema}.jobs (queue, kind, state, attempt, scheduled_at, attempted_at, completed_at, discarded_at)
SELECT 'q' || (i % 5), 'k' || (i % 10), CASE WHEN i % 50 = 0 THEN 'discarded' ELSE 'completed' END, 1,
       f - interval '30 ms' - (i % 97) * interval '1 ms', f - (i % 13) * interval '10 ms',
       CASE WHEN i % 50 <> 0 THEN f END, CASE WHEN i % 50 = 0 THEN f END
FROM generate_series(1, $1::int) AS i,
     LATERAL (SELECT date_trunc('minute', now()) - interval '61 minutes' + (i % 3600) * interval '1 second' AS f) x
"""


async def rollup(url: str, finished: int) -> None:
    schema = "dash_cost_rollup"
    quoted = sql.quote_ident(schema)
    conn = await _fresh(url, schema)
    try:
        await conn.execute(ROLLUP_FILL.replace("{schema}", quoted), finished)
        await conn.execute(f"VACUUM ANALYZE {quoted}.jobs")
        await conn.execute(f"UPDATE {quoted}.job_rollup_state SET rolled_until = "
                           "date_trunc('minute', now()) - interval '62 minutes'")
        statement = sql.render(schema).ROLLUP_FINISHED
        backend = psutil.Process(conn.get_server_pid())
        cpu, began, groups = _cpu(backend), time.perf_counter(), 0
        while True:
            row = await conn.fetchrow(statement, None)
            groups += row["groups"]
            if not row["behind"]:
                break
        spent, wall = _cpu(backend) - cpu, time.perf_counter() - began
    finally:
        await conn.close()
    per_job = spent * 1e6 / finished
    print(f"rollup: {finished:,} finished jobs -> {groups:,} rows in {wall * 1000:.0f} ms; "
          f"{per_job:.2f} us of Postgres CPU per job = {100 * per_job / DRAIN_CPU_US:.1f} % of the drain's "
          f"{DRAIN_CPU_US:.0f} us/job (once, in bulk, off the hot path)")


SEARCH_FILL = """
INSERT INTO {schema}.jobs (queue, kind, args, state, attempt, attempted_at, completed_at, errors, tags)
SELECT CASE WHEN i % 10 = 0 THEN 'mail' ELSE 'default' END, 'k' || (i % 20),
       jsonb_build_object('to', 'user' || i || '@example.com', 'n', i, 'data', jsonb_build_object('userId', i % 1000)),
       CASE WHEN i % 500 = 3 THEN 'discarded' ELSE 'completed' END, 1, now(), now(),
       CASE WHEN i % 500 = 3 THEN '[{"error": "connect: timed out", "kind": "error"}]'::jsonb ELSE '[]' END,
       CASE WHEN i % 100 = 0 THEN ARRAY['vip'] ELSE '{{}}' END
FROM generate_series($1::int, $2::int) AS i
"""


async def search(url: str, rows: int, reads: int) -> None:
    schema = "dash_cost_search"
    quoted = sql.quote_ident(schema)
    conn = await _fresh(url, schema)
    try:
        chunk = 1_000_000
        began = time.perf_counter()
        for start in range(1, rows + 1, chunk):
            await conn.execute(SEARCH_FILL.replace("{schema}", quoted), start, min(rows, start + chunk - 1))
        await conn.execute(f"VACUUM ANALYZE {quoted}.jobs")
        print(f"search: {rows:,} jobs filled and analysed in {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await conn.close()
    store = JobStore(url, schema=schema)
    await store.open()
    try:
        rare = rows // 2
        cases = {
            "page: newest": "",
            "page: one queue, discarded": "queue:mail state:discarded",
            "id:N": f"id:{rare}",
            "args.to:VALUE (one job)": f"args.to:user{rare}@example.com",
            "args.data.userId:7 (0.1 %)": "args.data.userId:7",
            "args.to:VALUE kind:k3": f"args.to:user{rare}@example.com kind:k3",
            "tag:vip state:completed": "tag:vip state:completed",
            'error:"timed out" (bounded)': 'error:"timed out"',
            "bare word, absent (bounded)": "no-such-text",
        }
        print(f"  {'query':34} {'p50 ms':>8} {'p95 ms':>8}  rows")
        for name, text in cases.items():
            query = parse_query(text)
            times, found = [], 0
            for _ in range(reads):
                started = time.perf_counter()
                found = len(await store.dashboard_job_page(query=query, limit=51))
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            print(f"  {name:34} {statistics.median(times):8.1f} {times[int(0.95 * (len(times) - 1))]:8.1f}  {found}")
    finally:
        await store.close()


async def _main(url: str, args: argparse.Namespace) -> None:
    if args.only in (None, "args"):
        await args_index(url, args.jobs, args.rounds)
    if args.only in (None, "tags"):
        await tag_index(url, args.jobs, args.rounds)
    if args.only in (None, "rollup"):
        await rollup(url, args.finished)
    if args.only in (None, "search"):
        await search(url, args.rows, args.reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs inserted, claimed and completed per variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--finished", type=int, default=200_000, help="finished jobs the rollup aggregates")
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs in the search table")
    parser.add_argument("--reads", type=int, default=20, help="reads per search")
    parser.add_argument("--only", choices=["args", "tags", "rollup", "search"])
    parser.add_argument("--url", help="a Postgres to use (default: a dedicated embedded server)")
    args = parser.parse_args()
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    with server:
        print(server.description, flush=True)
        asyncio.run(_main(server.create_database("bench_dashboard_cost"), args))


if __name__ == "__main__":
    main()
