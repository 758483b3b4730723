"""The flow-control statements read their small partial indexes, never the whole table: with
50,000 finished jobs, the limited claim, the dependency settles and the unique look-up must
cost what the waiting work holds, not what the table holds. Both plan-cache modes, since a
prepared statement switches to a generic plan after a few runs (tests.support.plans: a plain
EXPLAIN with parameters would always show the custom plan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from engine.db import sql
from engine.db.store import JobStore
from tests.support import plans


@pytest_asyncio.fixture
async def filled(pg_url: str, schema: str) -> AsyncIterator[JobStore]:
    queue = JobStore(pg_url, schema=schema)
    await queue.open()
    await queue.migrate()
    async with queue.pool.acquire() as conn:
        await conn.execute(f"""
            INSERT INTO "{schema}".jobs (queue, kind, args, state, completed_at, attempted_at, unique_key,
                                         unique_states, waiting_for, scheduled_at)
            SELECT 'default', 'k', jsonb_build_object('i', i),
                   CASE WHEN i <= 200 THEN 'available' WHEN i <= 220 THEN 'executing'
                        WHEN i <= 320 THEN 'scheduled' ELSE 'completed' END,
                   CASE WHEN i > 320 THEN now() END,
                   CASE WHEN i > 200 THEN now() END,
                   'key-' || i, ARRAY['available', 'scheduled'],
                   CASE WHEN i > 220 AND i <= 320 THEN ARRAY[i::bigint + 1000, i::bigint + 2000] END,
                   CASE WHEN i > 220 AND i <= 320 THEN '9999-12-31'::timestamptz ELSE now() END
            FROM generate_series(1, 50320) AS i""")
        await conn.execute(f'INSERT INTO "{schema}".queue_limits (queue) VALUES (\'default\')')
        await conn.execute(f'ANALYZE "{schema}".jobs')
    yield queue
    await queue.close()


async def _plan(queue: JobStore, statement: str, *args: Any, mode: str) -> list[tuple[str, str | None]]:
    """How ``statement`` runs as a prepared statement under ``mode`` (EXPLAIN ANALYZE really
    runs it: tests.support.plans rolls it back)."""
    async with queue.pool.acquire() as conn:
        return plans.scans(await plans.explain(conn, statement, *args, mode=mode, analyze=True))


def _indexes(scans: list[tuple[str, str | None]]) -> set[str | None]:
    assert not [scan for scan in scans if scan[0] == "Seq Scan"], scans
    return {index for _, index in scans}


MODES = ["force_custom_plan", "force_generic_plan"]


@pytest.mark.parametrize("mode", MODES)
async def test_limited_claim_reads_the_fetch_and_state_indexes(filled: JobStore, mode: str) -> None:
    s = filled.statements
    scans = await _plan(filled, s.JOB_FETCH_LIMITED, "default", 10, "node-1", 100, 60.0, 50, mode=mode)
    # Its global concurrency counts the queue's executing jobs on their own partial index (005).
    assert _indexes(scans) == {"jobs_fetch_idx", "jobs_executing_queue_idx", "jobs_pkey"}


@pytest.mark.parametrize("mode", MODES)
async def test_dependency_settles_read_the_waiting_indexes(filled: JobStore, mode: str) -> None:
    s = filled.statements
    # Either partial index of waiting jobs will do (the GIN one pays off once they are many).
    after_ack = await _plan(filled, s.DEPENDENCY_RESOLVE_DEPENDENTS, [1225], s.insert_channel, mode=mode)
    assert _indexes(after_ack) & {"jobs_waiting_for_idx", "jobs_waiting_idx"}
    assert _indexes(after_ack) <= {"jobs_waiting_for_idx", "jobs_waiting_idx", "jobs_pkey"}
    sweep = await _plan(filled, s.DEPENDENCY_LIST_SETTLED, 1000, mode=mode)
    assert "jobs_waiting_idx" in _indexes(sweep) and _indexes(sweep) <= {"jobs_waiting_idx", "jobs_pkey"}


@pytest.mark.parametrize("mode", MODES)
async def test_unique_holder_lookup_reads_its_index(filled: JobStore, mode: str) -> None:
    scans = await _plan(filled, filled.statements.JOB_GET_BY_UNIQUE_KEYS, ["key-40000", "key-7"], mode=mode)
    assert _indexes(scans) == {"jobs_unique_key_idx"}


async def test_plans_hold_on_a_fresh_table_too(pg_url: str, schema: str) -> None:
    """Before any ANALYZE the planner guesses; the partial indexes must still win."""
    queue = JobStore(pg_url, schema=schema)
    await queue.open()
    try:
        await queue.migrate()
        async with queue.pool.acquire() as conn:
            await conn.execute(f"""INSERT INTO "{schema}".jobs (queue, kind, state, completed_at)
                                   SELECT 'default', 'k', 'completed', now() FROM generate_series(1, 20000)""")
        s = queue.statements
        scans = await _plan(queue, s.DEPENDENCY_RESOLVE_DEPENDENTS, [5], s.insert_channel, mode="auto")
        assert _indexes(scans) <= {"jobs_waiting_for_idx", "jobs_waiting_idx", "jobs_pkey"}
    finally:
        await queue.close()


def test_no_flow_statement_is_left_unchecked() -> None:
    flow = [name for name in dir(sql)
            if name.startswith(("DEPENDENCY_", "QUEUE_LIMIT_")) or name == "JOB_FETCH_LIMITED"]
    assert sorted(flow) == ["DEPENDENCY_ATTACH", "DEPENDENCY_LIST_SETTLED", "DEPENDENCY_LOCK",
                            "DEPENDENCY_RESOLVE_DEPENDENTS", "DEPENDENCY_RESOLVE_JOBS", "JOB_FETCH_LIMITED",
                            "QUEUE_LIMIT_CREATE", "QUEUE_LIMIT_LOCK"]
