"""Chaos soak: engine processes and a Postgres of their own, with random faults, and a
ledger of every attempt's start and end.

Three ``jobengine start`` processes reach Postgres through a TCP proxy that can black-hole
their traffic; an insert-only client feeds jobs at a steady rate; a cron entry fires every
minute. Every few seconds one fault, chosen at random: SIGKILL of an engine (restarted),
SIGTERM (restarted after it drained), SIGSTOP for a few seconds then SIGCONT, a Postgres
restart (fast or immediate), a connection black-hole, a login refusal (the engines' role
set NOLOGIN). At the end the faults stop, every job must finish, and the report counts:

- jobs lost (inserted, never completed), which must be 0;
- overlapping runs (two attempts of one job running at once, in the ledger's wall-clock
  times), split into those beside a frozen (SIGSTOPped) process, which time-based leases
  cannot rule out, and the rest, which must be 0;
- duplicate starts (a job started more than once) and how many followed a fault;
- cron slots missed or fired twice (0);
- recovery times: from the end of each fault to the next finished job.

    .venv/bin/python -m bench.chaos --minutes 30            # the full soak
    .venv/bin/python -m bench.chaos --minutes 3 --seed 7    # a short one

Not part of the test suite. Raw results go to bench/raw/chaos/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from bench.chaos_jobs import KIND, register
from engine.core.config import build_config
from engine.core.registry import Registry
from engine.engine import Engine
from tests.faults.conftest import (
    BASE_SETTINGS,
    REPO,
    EngineProcess,
    RestartablePostgres,
    merge,
    start_process,
    toml_text,
)
from tests.support import ledger
from tests.support.tcpproxy import TcpProxy

ROLE = "chaos_app"
SCHEMA = "chaos"
FAULTS = ("kill", "term", "freeze", "pg_fast", "pg_immediate", "blackhole", "nologin")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--engines", type=int, default=3)
    p.add_argument("--rate", type=float, default=20.0, help="jobs enqueued per second")
    p.add_argument("--gap", type=float, nargs=2, default=(8.0, 20.0), help="seconds between faults (min max)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args()


class Soak:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.rng = random.Random(args.seed)
        (base / "pg").mkdir()
        self.pg = RestartablePostgres(base / "pg")
        self.proxy = TcpProxy.for_url(self.pg.url)
        self.ledger = base / "ledger.jsonl"
        self.engines: dict[int, EngineProcess] = {}  # slot -> process
        self.spawned = 0
        self.inserted: list[int] = []
        self.insert_failures = 0
        self.faults: list[dict[str, Any]] = []
        self.frozen: list[tuple[int, float, float]] = []  # pid, from, to
        self.deaths: dict[int, float] = {}  # pid -> when it was killed or exited

    # --- setup ----------------------------------------------------------------------------

    async def setup(self) -> None:
        await self.proxy.start()
        conn = await asyncpg.connect(self.pg.url)
        try:
            await conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
        finally:
            await conn.close()

    def engine_url(self) -> str:
        rest = self.proxy.url.partition("://")[2].partition("@")[2]
        return f"postgresql://{ROLE}@{rest}"

    def spawn(self, slot: int) -> EngineProcess:
        self.spawned += 1
        settings = merge(BASE_SETTINGS, {
            "modules": ["bench.chaos_jobs"], "database_url": self.engine_url(), "schema": SCHEMA,
            "node_name": f"chaos-{slot}-{self.spawned}", "queues": {"default": {"concurrency": 10}},
            "lifeline": {"max_rescues": 90},
            "cron": [{"name": "tick", "schedule": "* * * * *", "job": {"jobType": KIND, "data": {"cron": True}}}]})
        config = self.base / f"engine{self.spawned}.toml"
        config.write_text(_toml(settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_") and k != "DATABASE_URL"}
        env[ledger.LEDGER_ENV] = str(self.ledger)
        process = start_process(config, self.base / f"engine{self.spawned}.log", env)
        self.engines[slot] = process
        return process

    # --- load and faults ------------------------------------------------------------------

    async def feed(self, client: Engine, until: float) -> None:
        while time.monotonic() < until:
            sleep = [round(self.rng.uniform(0.0, 1.5), 2) for _ in range(max(1, int(self.args.rate)))]
            try:
                jobs = await client.enqueue_many([{"jobType": KIND, "data": {"sleep": s}} for s in sleep])
                self.inserted += [job.id for job in jobs]
            except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
                self.insert_failures += 1  # not inserted: nothing to lose
            await anyio.sleep(1.0)

    async def fault(self) -> None:
        kind = self.rng.choice(FAULTS)
        slot = self.rng.randrange(self.args.engines)
        process = self.engines[slot]
        began = time.time()
        detail: dict[str, Any] = {"fault": kind, "at": began}
        if kind == "kill":
            process.send(signal.SIGKILL)
            process.popen.wait(10)
            self.deaths[process.pid] = time.time()
            await anyio.sleep(self.rng.uniform(1, 3))
            self.spawn(slot)
        elif kind == "term":
            process.send(signal.SIGTERM)
            detail["exit"] = await anyio.to_thread.run_sync(lambda: process.popen.wait(60))
            self.deaths[process.pid] = time.time()
            self.spawn(slot)
        elif kind == "freeze":
            seconds = self.rng.uniform(2, 8)
            process.send(signal.SIGSTOP)
            await anyio.sleep(seconds)
            process.send(signal.SIGCONT)
            self.frozen.append((process.pid, began, time.time()))
        elif kind in ("pg_fast", "pg_immediate"):
            await anyio.to_thread.run_sync(self.pg.stop, kind.removeprefix("pg_"))
            await anyio.sleep(self.rng.uniform(0.5, 3))
            await anyio.to_thread.run_sync(self.pg.start)
        elif kind == "blackhole":
            self.proxy.blackhole()
            await anyio.sleep(self.rng.uniform(3, 10))
            self.proxy.restore()
        elif kind == "nologin":
            await self._admin(f"ALTER ROLE {ROLE} NOLOGIN")
            await anyio.sleep(self.rng.uniform(2, 6))
            await self._admin(f"ALTER ROLE {ROLE} LOGIN")
        detail["ended"] = time.time()
        self.faults.append(detail)

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.pg.url, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        await self.setup()
        for slot in range(self.args.engines):
            await self.spawn(slot).wait_logged("engine started", timeout=60)
        registry = Registry()
        register(registry)
        client_config = build_config({"database_url": self.pg.url, "schema": SCHEMA, "query_timeout": 5,
                                      "dashboard": {"enabled": False}})
        started = time.time()
        until = time.monotonic() + self.args.minutes * 60
        async with Engine(config=client_config, registry=registry) as client, anyio.create_task_group() as group:
            group.start_soon(self.feed, client, until)
            while time.monotonic() < until - self.args.gap[0]:
                await anyio.sleep(self.rng.uniform(*self.args.gap))
                await self.fault()
        drained_in = await self.drain()
        for process in self.engines.values():
            process.send(signal.SIGTERM)
        for process in self.engines.values():
            await anyio.to_thread.run_sync(process.popen.wait, 60)
        return await self.report(started, drained_in)

    async def drain(self, deadline: float = 300.0) -> float | None:
        """Seconds until every inserted job finished, None if some had not by ``deadline``."""
        began = time.monotonic()
        while time.monotonic() - began < deadline:
            states = await self._states()
            if all(states.get(job_id) in ("completed", "discarded", "cancelled") for job_id in self.inserted):
                return time.monotonic() - began
            await anyio.sleep(1.0)
        return None

    async def _states(self) -> dict[int, str]:
        conn = await asyncpg.connect(self.pg.url, timeout=10)
        try:
            return {r["id"]: r["state"] for r in await conn.fetch(f"SELECT id, state FROM {SCHEMA}.jobs")}
        finally:
            await conn.close()

    async def report(self, started: float, drained_in: float | None) -> dict[str, Any]:
        entries = ledger.read_ledger(self.ledger)
        states = await self._states()
        conn = await asyncpg.connect(self.pg.url, timeout=10)
        try:
            slots = [r["slot"] for r in await conn.fetch(
                f"SELECT meta->>'cron_slot' AS slot FROM {SCHEMA}.jobs WHERE meta->>'cron' = 'tick'")]
        finally:
            await conn.close()
        overlaps, beside_frozen = self._overlaps(entries)
        starts = ledger.started_ids(entries)
        duplicated = [job_id for job_id, n in starts.items() if n > 1]
        return {
            "minutes": self.args.minutes, "engines": self.args.engines, "seed": self.args.seed,
            "jobs_inserted": len(self.inserted), "insert_calls_refused": self.insert_failures,
            "jobs_lost": sum(1 for job_id in self.inserted if states.get(job_id) != "completed"),
            "not_completed_states": _count(states.get(job_id) for job_id in self.inserted
                                           if states.get(job_id) != "completed"),
            "overlapping_runs": overlaps, "overlapping_runs_beside_a_frozen_process": beside_frozen,
            "duplicate_starts": len(duplicated),
            "duplicate_starts_with_no_fault_between": self._unexplained(entries, duplicated),
            "cron_slots_doubled": sum(1 for n in _count(slots).values() if n > 1),
            "cron_slots_missed": _missed_minutes(slots, started),
            "faults": _count(f["fault"] for f in self.faults),
            "recovery_seconds": self._recoveries(entries),
            "drained_in_seconds": drained_in,
        }

    def _overlaps(self, entries: list[ledger.Entry]) -> tuple[int, int]:
        """Pairs of attempts of one job whose [start, end] intervals intersect; an attempt
        with no end ran until its process died (or to the end of the run)."""
        runs: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
        open_runs: dict[tuple[int, int, int], float] = {}
        for e in entries:
            key = (e.job_id, e.attempt, e.pid)
            if e.event == "start":
                open_runs[key] = e.at
            elif key in open_runs:
                runs[e.job_id].append((open_runs.pop(key), e.at, e.pid))
        for (job_id, _attempt, pid), at in open_runs.items():
            runs[job_id].append((at, self.deaths.get(pid, time.time()), pid))
        total = frozen = 0
        for intervals in runs.values():
            intervals.sort()
            for i, (_start, end, pid) in enumerate(intervals):
                for other_start, _other_end, other_pid in intervals[i + 1:]:
                    if other_start < end:
                        total += 1
                        frozen += any(p in (pid, other_pid) and a < end and b > other_start
                                      for p, a, b in self.frozen)
        return total - frozen, frozen

    def _unexplained(self, entries: list[ledger.Entry], duplicated: list[int]) -> int:
        """Duplicated jobs whose first two starts have no fault between them (a fault that
        ended less than a rescue window before the first start counts as between)."""
        window = float(BASE_SETTINGS["lifeline"]["rescue_after"]) * 3
        first_starts: dict[int, list[float]] = defaultdict(list)
        for e in entries:
            if e.event == "start" and e.job_id in set(duplicated):
                first_starts[e.job_id].append(e.at)
        unexplained = 0
        for starts in first_starts.values():
            a, b = sorted(starts)[:2]
            if not any(f["at"] <= b and f["ended"] + window >= a for f in self.faults):
                unexplained += 1
        return unexplained

    def _recoveries(self, entries: list[ledger.Entry]) -> dict[str, float]:
        finishes = sorted(e.at for e in entries if e.event == "finish")
        waits = []
        for fault in self.faults:
            after = next((at for at in finishes if at > fault["ended"]), None)
            if after is not None:
                waits.append(after - fault["ended"])
        waits.sort()
        if not waits:
            return {}
        return {"p50": round(waits[len(waits) // 2], 2), "max": round(waits[-1], 2)}


def _count(values: Any) -> dict[Any, int]:
    counts: dict[Any, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(counts)


def _missed_minutes(slots: list[str], started: float) -> int:
    """Whole minutes between the first and the last fired slot that fired no job."""
    minutes = sorted({int(_epoch(s) // 60) for s in slots if s})
    return sum(1 for m in range(minutes[0], minutes[-1] + 1) if m not in set(minutes)) if minutes else 0


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _toml(settings: dict[str, Any]) -> str:
    cron = settings.pop("cron")
    lines = [toml_text(settings)]
    for entry in cron:
        lines.append("\n[[cron]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items() if k != "job"]
        lines.append("job = " + _inline(entry["job"]))
    return "\n".join(lines) + "\n"


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def run() -> None:
    args = parse_args()
    base = REPO / ".jobengine" / f"chaos-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    soak = Soak(args, base)
    try:
        result = anyio.run(soak.run)
    finally:
        for process in soak.engines.values():
            if process.alive:
                process.popen.kill()
        soak.pg.close()
    out = args.out or REPO / "bench" / "raw" / "chaos" / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    run()
