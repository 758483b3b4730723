"""The SQL surface for users (throughput, failure_rates, slowest_kinds) and the dashboard's
reads: right numbers, and plans that read indexes instead of the whole table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.core.job import JobState
from engine.db import sql
from engine.maintenance.rollup import Rollup

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")

# 20,000 old finished jobs plus a recent handful: what a table looks like after a while.
SEED = """
INSERT INTO {schema}.jobs (queue, kind, args, state, attempt, attempted_at, completed_at, discarded_at,
                           errors, meta)
SELECT CASE WHEN i % 10 = 0 THEN 'mail' ELSE 'default' END, 'bulk' || (i % 7), jsonb_build_object('n', i),
       CASE WHEN i % 50 = 0 THEN 'discarded' ELSE 'completed' END, 1,
       now() - interval '3 days' - interval '2 seconds', CASE WHEN i % 50 <> 0 THEN now() - interval '3 days' END,
       CASE WHEN i % 50 = 0 THEN now() - interval '3 days' END, '[]', '{{}}'
FROM generate_series(1, 20000) AS i
"""

RECENT = """
INSERT INTO {schema}.jobs (queue, kind, args, state, attempt, attempted_at, completed_at, discarded_at, errors)
VALUES
 ('default', 'report', '{{}}', 'completed', 1, now() - interval '10 minutes 4 seconds',
  now() - interval '10 minutes', NULL, '[]'),
 ('default', 'report', '{{}}', 'completed', 2, now() - interval '10 minutes 2 seconds', now() - interval '10 minutes',
  NULL, '[{{"kind": "error", "error": "x"}}]'),
 ('default', 'report', '{{}}', 'discarded', 3, now() - interval '2 minutes', NULL, now() - interval '2 minutes',
  '[{{"kind": "error"}}, {{"kind": "error"}}, {{"kind": "error"}}]'),
 ('mail', 'mail', '{{}}', 'completed', 1, now() - interval '2 minutes 1 second', now() - interval '2 minutes',
  NULL, '[]'),
 ('mail', 'mail', '{{}}', 'cancelled', 0, NULL, NULL, NULL, '[]')
"""


async def _schema_with_rows(start_engine: Any, *, old: bool = True) -> Any:
    engine = await start_engine()
    schema = sql.quote_ident(engine.store.schema)
    async with engine.store.pool.acquire() as conn:
        if old:
            await conn.execute(SEED.format(schema=schema))
        await conn.execute(RECENT.format(schema=schema))
        await conn.execute(f"UPDATE {schema}.jobs SET cancelled_at = now() WHERE state = 'cancelled'")
        await conn.execute(f"ANALYZE {schema}.jobs")
    return engine


async def test_views_report_the_last_day(start_engine: Any) -> None:
    engine = await _schema_with_rows(start_engine)
    schema = sql.quote_ident(engine.store.schema)
    async with engine.store.pool.acquire() as conn:
        throughput = await conn.fetch(f"SELECT queue, sum(completed) AS c, sum(discarded) AS d, sum(cancelled) AS x "
                                      f"FROM {schema}.throughput GROUP BY queue ORDER BY queue")
        rates = {r["kind"]: dict(r) for r in await conn.fetch(f"SELECT * FROM {schema}.failure_rates")}
        slowest = [dict(r) for r in await conn.fetch(f"SELECT * FROM {schema}.slowest_kinds")]
    assert [(r["queue"], r["c"], r["d"], r["x"]) for r in throughput] == [("default", 2, 1, 0), ("mail", 1, 0, 1)]
    report = rates["report"]
    assert (report["completed"], report["discarded"], report["attempts"]) == (2, 1, 6)
    assert float(report["failure_rate"]) == round(1 / 3, 4) and float(report["error_rate"]) == round(4 / 6, 4)
    assert [row["kind"] for row in slowest] == ["report", "mail"]  # old jobs (3 days) are outside the window
    assert float(slowest[0]["max_seconds"]) == 4.0 and slowest[0]["completed"] == 2


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation or index) for every scan in a plan tree."""
    found = []
    if "Scan" in plan["Node Type"]:
        found.append((plan["Node Type"], plan.get("Index Name") or plan.get("Relation Name") or ""))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def _plan(conn: Any, text: str, *args: Any) -> list[tuple[str, str]]:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + text, *args)
    return _scans((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


async def test_dashboard_reads_use_indexes_not_table_scans(start_engine: Any) -> None:
    engine = await _schema_with_rows(start_engine)
    s, schema = engine.store.statements, engine.store.schema
    states = [state.value for state in JobState if state.value != "completed"]
    page = sql.dashboard_job_page
    reads = {
        "queue names": (s.DASHBOARD_QUEUE_NAMES,),
        "capped counts": (s.DASHBOARD_QUEUE_COUNTS, ["default", "mail"], 10_000),
        "oldest available": (s.DASHBOARD_OLDEST_AVAILABLE, "default"),
        # a fresh install's rollup mark, a week back: the last hour is read from the jobs
        "throughput": (s.DASHBOARD_THROUGHPUT, 60, None, datetime.now(UTC) - timedelta(days=7)),
        "children": (s.DASHBOARD_JOB_CHILDREN, "17"),
        "views": (f'SELECT * FROM "{schema}".throughput UNION ALL SELECT NULL, NULL, count(*), 0, 0 '
                  f'FROM "{schema}".failure_rates',),
        "rare state": (page(schema, [], pairs=2, search=False, ascending=False),
                       "default", "discarded", "mail", "discarded", 50),
        "one queue": (page(schema, ["before"], pairs=len(states), search=False, ascending=False),
                      *[v for state in states for v in ("mail", state)], 9_000, 50),
        "kind": (page(schema, ["kind"], pairs=0, search=False, ascending=True), "bulk3", 50),
        "search in a state": (page(schema, [], pairs=1, search=True, ascending=False),
                              "default", "completed", "%n\\_1%", 50),
    }
    async with engine.store.pool.acquire() as conn:
        for name, (text, *args) in reads.items():
            scans = await _plan(conn, text, *args)
            assert scans, name
            assert ("Seq Scan", "jobs") not in scans, f"{name}: {scans}"


async def test_counts_are_exact_up_to_the_cap_then_estimated(start_engine: Any) -> None:
    engine = await _schema_with_rows(start_engine)
    counts = await engine.store.dashboard_counts(["default", "mail"], 1_000)
    assert counts["mail"]["cancelled"] == (1, True) and counts["mail"]["discarded"] == (400, True)
    value, exact = counts["default"]["completed"]
    assert not exact and 16_000 <= value <= 20_000  # truly 18,002: the planner's estimate
    assert counts["default"]["executing"] == (0, True)


async def test_the_readme_sql_examples_run(start_engine: Any) -> None:
    section = README[README.index("## The SQL surface"):]
    engine = await _schema_with_rows(start_engine, old=False)
    await engine.enqueue("log", {"message": "waiting"})  # something for the "what is stuck" query
    schema = sql.quote_ident(engine.store.schema)
    async with engine.store.pool.acquire() as conn:  # the rollup behind job_history sees the seeded past
        await conn.execute(f"UPDATE {schema}.job_rollup_state SET rolled_until = now() - interval '2 days'")
    await Rollup(engine.store).roll_once()
    statements = [s for block in re.findall(r"```sql\n(.*?)```", section, flags=re.S) for s in block.split(";")]
    ran = 0
    async with engine.store.pool.acquire() as conn:
        for statement in statements:
            text = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
            if text.strip():
                rows = await conn.fetch(text.replace("jobengine.", f"{schema}."))
                assert rows, text  # every example has something to show on this data
                ran += 1
    assert ran >= 5
