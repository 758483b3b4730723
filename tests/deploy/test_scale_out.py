"""Scale-out: four ``jobengine start`` processes share one database, as containers would.

One scenario runs once for this module (about 20 s): 20,000 jobs over three queues plus two
cron entries (every second, every minute); one process is SIGKILLed midway; the other three
finish everything and are stopped with SIGTERM. The tests then read what happened from an
independent ledger (one row per handler run, written by tests/deploy/ledger_jobs.py) and
from the jobs table.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from engine.core.config import build_config
from engine.core.job import JobSpec
from engine.cron.schedule import CronSchedule
from engine.engine import Engine
from tests.deploy.cluster import Cluster, node_pid, wait_until
from tests.deploy.ledger_jobs import create_ledger

pytestmark = pytest.mark.slow

PROCESSES = 4
# queue -> (jobs, seconds each job sleeps); 20,000 in all.
MIX = {"default": (13_000, 0.0), "bulk": (6_000, 0.0), "limited": (1_000, 0.01)}
QUEUES = {"default": {"concurrency": 20}, "bulk": {"concurrency": 10},
          "limited": {"concurrency": 4, "global_limit": 6}}
CRON: list[dict[str, Any]] = [
    {"name": "every-second", "schedule": "* * * * * *", "job": {"jobType": "ledger.cron", "data": {}}},
    {"name": "every-minute", "schedule": "* * * * *", "job": {"jobType": "ledger.cron", "data": {}}},
]
SETTINGS = {
    "modules": ["tests.deploy.ledger_jobs"],
    "poll_interval": 1.0,
    "pool_size": 6,
    "shutdown_grace": 5.0,
    "queues": QUEUES,
    "lifeline": {"heartbeat_interval": 0.5, "rescue_after": 3.0},
    "dashboard": {"enabled": False},
    "logging": {"format": "json", "level": "warning"},
    "cron": CRON,
}


@dataclass
class Outcome:
    """Everything the scenario observed."""

    killed_pid: int
    survivors: list[int]
    exit_codes: dict[int, int | None]
    jobs: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    nodes_after_stop: set[int]
    cron_running: bool
    window: tuple[datetime, datetime]
    phases: dict[str, float]
    logs: str


async def _count(conn: asyncpg.Connection, schema: str, where: str) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".jobs WHERE {where}'))


async def _insert_jobs(client: Engine) -> None:
    specs = [JobSpec(kind="ledger.work", args={"sleep": sleep} if sleep else {}, queue=queue)
             for queue, (count, sleep) in MIX.items() for _ in range(count)]
    random.Random(8).shuffle(specs)  # interleave the queues
    for start in range(0, len(specs), 2_000):
        await client.enqueue_many(specs[start:start + 2_000])


async def _cron_running(conn: asyncpg.Connection, schema: str) -> bool:
    try:
        return bool(await conn.fetchval(f'SELECT count(*) FROM "{schema}".cron_entries'))
    except asyncpg.UndefinedTableError:
        return False


def _completed(cluster: Cluster, conn: asyncpg.Connection, schema: str, at_least: int,
               dead: frozenset[int] = frozenset()) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        cluster.check_alive(except_pids=dead)
        return await _count(conn, schema, "kind = 'ledger.work' AND state = 'completed'") >= at_least
    return check


async def _run(cluster: Cluster, client: Engine, conn: asyncpg.Connection, schema: str) -> Outcome:
    began = time.monotonic()
    phases: dict[str, float] = {}

    def mark(phase: str) -> None:
        phases[phase] = round(time.monotonic() - began, 1)

    cluster.start(PROCESSES)
    await cluster.wait_ready(conn, timeout=60)
    mark("ready")
    window_start = datetime.now(UTC) + timedelta(seconds=1)
    await _insert_jobs(client)
    mark("inserted")
    total = sum(count for count, _ in MIX.values())
    await wait_until(_completed(cluster, conn, schema, total * 2 // 5), 60, what="40% of the jobs")
    killed = cluster.kill(PROCESSES - 1)
    mark("killed")
    await wait_until(_completed(cluster, conn, schema, total, frozenset({killed})), 60,
                     what="every job to complete after the SIGKILL")
    mark("all completed")
    cron_running = await _cron_running(conn, schema)
    window_end = datetime.now(UTC) - timedelta(seconds=1)
    if cron_running:  # every slot of the window inserted and run before stopping
        slot_done = f"meta->>'cron' IS NOT NULL AND (meta->>'cron_slot')::timestamptz <= '{window_end.isoformat()}'"
        await wait_until(lambda: _cron_settled(conn, schema, slot_done), 30, what="cron jobs of the window")
    mark("cron settled")
    codes = cluster.terminate(timeout=20)
    mark("stopped")
    return Outcome(
        killed_pid=killed, survivors=[p for p in cluster.pids if p != killed], exit_codes=codes,
        jobs=[{**r, "meta": json.loads(r["meta"])} for r in await conn.fetch(
            f'SELECT id, queue, kind, state, attempted_by, rescued, meta, completed_at FROM "{schema}".jobs')],
        ledger=[dict(r) for r in await conn.fetch(f'SELECT * FROM "{schema}".ledger ORDER BY started')],
        nodes_after_stop={node_pid(r["name"]) for r in await conn.fetch(f'SELECT name FROM "{schema}".nodes')},
        cron_running=cron_running, window=(window_start, window_end), phases=phases, logs=cluster.logs())


async def _cron_settled(conn: asyncpg.Connection, schema: str, slot_done: str) -> bool:
    return await _count(conn, schema, f"{slot_done} AND state <> 'completed'") == 0


@pytest_asyncio.fixture(scope="module")
async def outcome(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outcome]:
    schema = f"t_scale_{uuid.uuid4().hex[:10]}"
    workdir: Path = tmp_path_factory.mktemp("scale-out")
    cluster = Cluster(workdir, database_url=pg_url, schema=schema, settings=SETTINGS)
    client = Engine(config=build_config({"database_url": pg_url, "schema": schema, "dashboard": {"enabled": False},
                                         "modules": ["tests.deploy.ledger_jobs"]}))
    conn = await asyncpg.connect(pg_url)
    try:
        await create_ledger(conn, schema)
        async with client:
            try:
                yield await _run(cluster, client, conn, schema)
            except BaseException:
                print(cluster.logs())
                raise
    finally:
        cluster.terminate(timeout=10)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def _runs(outcome: Outcome) -> dict[int, list[dict[str, Any]]]:
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in outcome.ledger:
        runs[row["job_id"]].append(row)
    return runs


def _settled_jobs(outcome: Outcome) -> list[dict[str, Any]]:
    """Every job but cron jobs of slots after the window: those may be inserted while the
    processes stop, and stay available for the next start."""
    end = outcome.window[1]
    return [job for job in outcome.jobs
            if "cron_slot" not in job["meta"] or datetime.fromisoformat(job["meta"]["cron_slot"]) <= end]


def test_every_job_completes_and_runs_once_except_where_the_killed_process_died(outcome: Outcome) -> None:
    runs = _runs(outcome)
    jobs = _settled_jobs(outcome)
    assert Counter(job["state"] for job in jobs)["completed"] == len(jobs)
    assert sum(1 for job in jobs if job["kind"] == "ledger.work") == sum(c for c, _ in MIX.values())
    for job in jobs:
        attempts = runs[job["id"]]
        assert attempts, f"job {job['id']} is completed but its handler never ran"
        # The engine's record of who completed it agrees with the ledger's last run.
        assert attempts[-1]["pid"] == node_pid(job["attempted_by"])
        # A job runs again only because the process that ran it was killed ...
        assert all(run["pid"] == outcome.killed_pid for run in attempts[:-1]), attempts
        # ... and never twice at the same time.
        assert all(a["finished"] <= b["started"] for a, b in itertools.pairwise(attempts)), attempts
    twice = sum(1 for attempts in runs.values() if len(attempts) > 1)
    first = min(run["started"] for run in outcome.ledger)
    last = {queue: round(max(run["finished"] for run in outcome.ledger if run["queue"] == queue) - first, 1)
            for queue in MIX}
    print(f"\n{len(jobs)} jobs; {twice} ran again after the SIGKILL; phases (s): {outcome.phases}; "
          f"each queue's last job finished after (s): {last}")


def test_the_killed_process_had_work_that_was_rescued(outcome: Outcome) -> None:
    assert outcome.killed_pid not in outcome.exit_codes
    rescued = [job for job in outcome.jobs if job["rescued"]]
    assert rescued, "the SIGKILL should have orphaned executing jobs"
    assert all(job["state"] == "completed" for job in rescued)
    assert {run["pid"] for run in outcome.ledger} == {outcome.killed_pid, *outcome.survivors}


def test_work_spreads_over_every_process(outcome: Outcome) -> None:
    per_process = Counter(run["pid"] for run in outcome.ledger)
    assert all(per_process[pid] > 500 for pid in outcome.survivors), per_process


def test_per_process_concurrency_limits_hold(outcome: Outcome) -> None:
    peaks: dict[tuple[int, str], int] = defaultdict(int)
    for run in outcome.ledger:
        peaks[run["pid"], run["queue"]] = max(peaks[run["pid"], run["queue"]], run["in_process"])
    for (pid, queue), peak in peaks.items():
        if queue in QUEUES:
            assert peak <= QUEUES[queue]["concurrency"], (pid, queue, peak)
    assert max(peaks.values()) > 1, "no concurrency at all: the test proves nothing"


def _peak_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_global_limit_holds_across_processes(outcome: Outcome) -> None:
    limited = [(run["started"], run["finished"]) for run in outcome.ledger if run["queue"] == "limited"]
    assert _peak_overlap(limited) <= QUEUES["limited"]["global_limit"]


def test_every_cron_slot_fires_exactly_once(outcome: Outcome) -> None:
    assert outcome.cron_running, "`jobengine start` wrote no cron entries: is the ticker running?"
    start, end = outcome.window
    cron_jobs = [job for job in outcome.jobs if job["meta"].get("cron")]
    for entry in CRON:
        expected = CronSchedule.parse(entry["schedule"]).slots_between(start, end)
        fired = Counter(datetime.fromisoformat(job["meta"]["cron_slot"]) for job in cron_jobs
                        if job["meta"]["cron"] == entry["name"])
        assert all(count == 1 for count in fired.values()), f"{entry['name']}: a slot fired twice"
        missing = [slot for slot in expected if slot not in fired]
        assert not missing, f"{entry['name']}: slots never fired: {missing}"
    assert len(CronSchedule.parse("* * * * * *").slots_between(start, end)) >= 3


def test_sigterm_drains_and_every_survivor_exits_cleanly(outcome: Outcome) -> None:
    assert outcome.exit_codes == {pid: 0 for pid in outcome.survivors}, outcome.logs
    assert not [job for job in outcome.jobs if job["state"] == "executing"]


def test_stopped_processes_leave_no_node_rows(outcome: Outcome) -> None:
    # Each survivor removed its node on the way out; the killed one is left for the
    # lifeline of the others to forget.
    assert outcome.nodes_after_stop <= {outcome.killed_pid}
