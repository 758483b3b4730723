"""What definitions' run counters cost an ordinary job (SPEC section 10, issue 14).

Two questions, each on a fresh migrated schema with ``jobs`` plain (definition-less)
executing jobs, completed in batches of ``batch`` by the engine's completion statement:

- ``ack+cte``: would counting in the ack path be free? The same completion with a CTE that
  adds the batch's definition jobs to their counters (none here) against ``ack`` as shipped.
- ``no-008-idx``: what do migration 008's two partial indexes on jobs cost the same acks
  (they are what the shipped design adds: the counters move in the pruner's tally)?

Variants alternate for ``rounds`` rounds; the medians of the Postgres backend's CPU time
(psutil: wall time is useless on a shared machine) and of the WAL written per job are printed.

Example::

    .venv/bin/python -m bench.definition_counters postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import asyncpg
import psutil

from engine.db import sql
from engine.db.migrate import migrate

COUNTING_CTE = """
WITH done AS (
    UPDATE {schema}.jobs AS j
    SET state = 'completed', result = x.result, completed_at = now(), cancelled_at = NULL, discarded_at = NULL
    FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::jsonb[]) AS x(id, attempt, attempted_at, result)
    WHERE j.id = x.id AND j.state = (SELECT 'executing') AND j.attempt = x.attempt
      AND j.attempted_at = x.attempted_at
    RETURNING j.id, j.meta ? 'has_dependents' AS has_dependents, j.meta ->> 'definition' AS definition
), counted AS (
    UPDATE {schema}.cron_entries AS c SET runs_completed = c.runs_completed + n.completed
    FROM (SELECT definition, count(*) AS completed FROM done WHERE definition IS NOT NULL GROUP BY 1) AS n
    WHERE c.name = n.definition
)
SELECT id, has_dependents FROM done
"""


async def _prepare(conn: asyncpg.Connection, schema: str, jobs: int, drop_indexes: bool) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await migrate(conn, schema)
    if drop_indexes:
        await conn.execute(f'DROP INDEX "{schema}".jobs_definition_idx; '
                           f'DROP INDEX "{schema}".jobs_definition_untallied_idx')
    await conn.execute(f"""INSERT INTO "{schema}".jobs (kind, args, state, attempt, attempted_at, attempted_by)
        SELECT 'plain', jsonb_build_object('n', g), 'executing', 1, '2025-01-01T00:00:00Z', 'bench'
        FROM generate_series(1, {jobs}) AS g""")
    await conn.execute(f'VACUUM ANALYZE "{schema}".jobs')


async def _ack_all(conn: asyncpg.Connection, statement: str, schema: str, batch: int, *,
                   explain: bool = False) -> float:
    """Complete every job; the Postgres backend's CPU microseconds per job, or with
    ``explain`` the WAL bytes per job that EXPLAIN (ANALYZE, WAL) counts for the statement
    itself (the server's LSN also moves with other databases' writes on a shared server)."""
    ids = [r["id"] for r in await conn.fetch(f'SELECT id FROM "{schema}".jobs ORDER BY id')]
    at = await conn.fetchval(f'SELECT attempted_at FROM "{schema}".jobs LIMIT 1')
    backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
    text = f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) {statement}" if explain else statement
    cpu_before, wal = sum(backend.cpu_times()[:2]), 0
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        rows = await conn.fetch(text, chunk, [1] * len(chunk), [at] * len(chunk), [None] * len(chunk))
        if explain:
            wal += json.loads(rows[0][0])[0]["Plan"].get("WAL Bytes", 0)
    cpu = sum(backend.cpu_times()[:2]) - cpu_before
    return (wal if explain else cpu * 1e6) / len(ids)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    conn = await asyncpg.connect(args.url)
    schema = "bench_definition_counters"
    shipped = sql.render(schema).JOB_COMPLETE_IF_EXECUTING
    counting = COUNTING_CTE.replace("{schema}", f'"{schema}"')
    variants = {"ack": (shipped, False), "ack+cte": (counting, False), "no-008-idx": (shipped, True)}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wal: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (statement, drop) in variants.items():
                await _prepare(conn, schema, args.jobs, drop)
                cpu[name].append(await _ack_all(conn, statement, schema, args.batch))
        for name, (statement, drop) in variants.items():
            await _prepare(conn, schema, args.jobs, drop)
            wal[name].append(await _ack_all(conn, statement, schema, args.batch, explain=True))
        for name in variants:
            print(f"{name:12s} Postgres CPU {statistics.median(cpu[name]):7.2f} us/job, "
                  f"WAL {statistics.median(wal[name]):7.1f} B/job  (CPU rounds: "
                  f"{', '.join(f'{v:.1f}' for v in cpu[name])})")
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
