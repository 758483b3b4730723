"""Retention pruning at scale (issue 17): with ``--rows`` finished jobs in the table, does
pruning a day's ``--day-rows`` stall claims (a lock over 100 ms), and does a week of churn
bloat the table?

The timeline uses the engine's real prune code unchanged. The finished rows lie in the
past of the real clock: day ``j`` of ``I = rows / day_rows`` initial days finishes within
the first 23 hours of ``base + j days``, ``base = now - (I + days + 8) days`` (8: older than
the worker's rollup window). The retention is
``I`` days. Simulated day ``k`` (1..days) inserts day ``I + k - 1`` (server-side, in
chunks), then runs ``Pruner(store, RetentionConfig(...)).prune_once()`` with every
retention set so that exactly day ``k - 1`` has expired (the cutoff sits in the hour's gap
between two days, so the real clock moving during a prune takes no extra rows), then waits
until autovacuum has processed the table after the prune (a real day has hours for that).
So the table holds about ``rows`` finished jobs throughout.

All the while a real worker ``Engine`` (one queue, concurrency 16, no-op handler, its own
pruner kept idle by a long retention) is fed ``--rate`` jobs/s, and the bench times every
claim (``store.fetch``, wrapped here) and each job's enqueue-to-start latency. A sampler
reads ``pg_locks`` every 50 ms: the modes the pruner's backend (and autovacuum) hold on
``jobengine.jobs`` and its indexes, and any lock anyone waits for.

Sizes (heap, TOAST, each index, dead tuples, last autovacuum) are taken after the fill and
after every day; the report gives final / initial for each.

Example::

    .venv/bin/python -m bench.prune_scale                      # 10,000,000 rows, 7 days
    .venv/bin/python -m bench.prune_scale --rows 200000 --day-rows 20000 --days 3   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.server import ROOT, BenchServer

DAY = 86_400.0
SPREAD = 23 * 3600.0  # a day's rows finish within its first 23 hours
CUTOFF_BEFORE_DAY = 1800.0  # the prune cutoff: half an hour before the next day begins
# Every simulated day lies this much further in the past, out of the rollup's 7-day window:
# the worker's rollup would otherwise aggregate the fill's newest days when it starts.
PAST_DAYS = 8
KIND = "bench.probe"
STALL_MS = 100.0
SAMPLE_INTERVAL = 0.05
# Lock modes that conflict with what a claim takes on the table (RowShareLock for FOR UPDATE,
# RowExclusiveLock for the UPDATE).
CLAIM_CONFLICTS = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}

TRACEBACK = (
    'Traceback (most recent call last):\n  File "/app/engine/queues/executor.py", line 312, in _attempt\n'
    "    result = await handler(job)\n"
    '  File "/app/handlers/http.py", line 221, in run\n    async with session.request(self.method, '
    "self.url, headers=headers, data=body, timeout=timeout) as response:\n"
    '  File "/usr/lib/python3.12/site-packages/aiohttp/client.py", line 1197, in __aenter__\n'
    "    self._resp = await self._coro\n"
    '  File "/usr/lib/python3.12/site-packages/aiohttp/connector.py", line 1056, in _create_direct_connection\n'
    "    raise last_exc\naiohttp.client_exceptions.ClientConnectorError: Cannot connect to host "
    "hooks.example.com:443 ssl:default [Connect call failed ('203.0.113.7', 443)]\n")

# One chunk of finished jobs, numbered $1..$2 (n from 0): day n / $4, finishing at
# $3 (epoch of day 0) + day * 86400 + a share of $5 seconds. 97 % completed (3 % after one
# retry), 2 % cancelled before they ran, 1 % discarded after 3 attempts with tracebacks.
# Kinds and args as the seed's: 60 % mail (game-update template), 25 % http webhooks (with a
# unique key), 15 % log (some made by a definition); 5 % tagged.
FILL = """
INSERT INTO jobengine.jobs (queue, kind, args, meta, state, attempt, max_attempts, scheduled_at, inserted_at,
                            attempted_at, completed_at, cancelled_at, discarded_at, attempted_by, errors,
                            result, tags, unique_key, unique_states)
SELECT CASE WHEN k < 12 THEN 'mail' WHEN k < 17 THEN 'webhooks' ELSE 'default' END,
       CASE WHEN k < 12 THEN 'mail' WHEN k < 17 THEN 'http' ELSE 'log' END,
       CASE WHEN k < 12 THEN jsonb_build_object(
                'to', 'player' || n || '@players.example.com', 'subject', '게임 업데이트 알림',
                'template', 'game-update', 'data', jsonb_build_object(
                    'playerName', 'player-' || n, 'updateVersion', '1.2.0',
                    'newFeatures', jsonb_build_array('새로운 던전')))
            WHEN k < 17 THEN jsonb_build_object(
                'method', 'POST', 'url', 'https://hooks.example.com/orders/' || n,
                'headers', jsonb_build_object('content-type', 'application/json', 'x-shop', 'shop-' || (n % 500)),
                'body', jsonb_build_object('order', n, 'status', 'shipped', 'carrier', 'DHL',
                                           'items', jsonb_build_array(n % 97, n % 89)))
            ELSE jsonb_build_object('message', 'nightly report for account ' || (n % 10000), 'level', 'info',
                                    'fields', jsonb_build_object('account', n % 10000, 'rows', n % 5000)) END,
       CASE WHEN k >= 17 AND n % 60 = 17 THEN '{"definition": "nightly-report"}'::jsonb ELSE '{}'::jsonb END,
       CASE WHEN s = 0 THEN 'discarded' WHEN s < 3 THEN 'cancelled' ELSE 'completed' END,
       CASE WHEN s = 0 THEN 3 WHEN s < 3 THEN 0 WHEN s = 3 THEN 2 ELSE 1 END,
       CASE WHEN s = 0 THEN 3 ELSE 20 END,
       t - interval '2 s', t - interval '2 s',
       CASE WHEN s BETWEEN 1 AND 2 THEN NULL ELSE t - interval '50 ms' END,
       CASE WHEN s >= 3 THEN t END, CASE WHEN s BETWEEN 1 AND 2 THEN t END, CASE WHEN s = 0 THEN t END,
       CASE WHEN s BETWEEN 1 AND 2 THEN NULL ELSE 'worker-' || (n % 4) || '.example.internal.' || (1000 + n % 4)
                                                   || '.a1b2c3' END,
       CASE WHEN s = 0 THEN (SELECT jsonb_agg(jsonb_build_object(
                                 'attempt', a, 'at', t - make_interval(secs => 60 * (3 - a)), 'kind', 'error',
                                 'error', 'ClientConnectorError: Cannot connect to host hooks.example.com:443',
                                 'traceback', $6::text)) FROM generate_series(1, 3) AS a)
            WHEN s = 3 THEN jsonb_build_array(jsonb_build_object(
                                 'attempt', 1, 'at', t - interval '15 s', 'kind', 'error',
                                 'error', 'TimeoutError: the handler ran over its 30 s timeout'))
            ELSE '[]'::jsonb END,
       CASE WHEN s < 3 THEN NULL
            WHEN k < 12 THEN jsonb_build_object('messageId', '<' || n || '.1733000000@game.example.com>',
                                                'accepted', jsonb_build_array('player' || n || '@players.example.com'),
                                                'refused', '{}'::jsonb)
            WHEN k < 17 THEN jsonb_build_object('status', 200, 'url', 'https://hooks.example.com/orders/' || n,
                                                'headers', jsonb_build_object('content-type', 'application/json'),
                                                'body', jsonb_build_object('ok', true), 'truncated', false)
            ELSE jsonb_build_object('level', 'info', 'message', 'nightly report for account ' || (n % 10000)) END,
       CASE WHEN k = 12 THEN ARRAY['orders'] WHEN n % 25 = 0 THEN ARRAY['campaign'] ELSE '{}'::text[] END,
       CASE WHEN k BETWEEN 12 AND 16 THEN 'order-shipped-' || n END,
       CASE WHEN k BETWEEN 12 AND 16 THEN ARRAY['available', 'scheduled', 'executing', 'retryable'] END
FROM (SELECT n, n % 100 AS s, n % 20 AS k,
             to_timestamp($3::float8 + (n / $4) * 86400.0 + ((n % $4)::float8 / $4) * $5::float8) AS t
      FROM generate_series($1::bigint, $2::bigint) AS n) AS g
"""

SIZES = """
SELECT c.relname, pg_relation_size(c.oid) AS bytes
FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = 'jobengine.jobs'::regclass ORDER BY c.relname
"""

TABLE_STATS = """
SELECT pg_relation_size('jobengine.jobs'::regclass) AS heap,
       coalesce((SELECT pg_total_relation_size(reltoastrelid) FROM pg_class
                 WHERE oid = 'jobengine.jobs'::regclass AND reltoastrelid <> 0), 0) AS toast,
       pg_total_relation_size('jobengine.jobs'::regclass) AS total,
       s.n_live_tup, s.n_dead_tup, s.last_autovacuum, s.autovacuum_count, s.last_autoanalyze
FROM pg_stat_user_tables AS s WHERE s.relid = 'jobengine.jobs'::regclass
"""

LOCKS = """
SELECT l.pid, l.locktype, l.mode, l.granted, c.relname, a.backend_type, a.application_name,
       CASE WHEN l.granted THEN NULL ELSE pg_blocking_pids(l.pid) END AS blockers
FROM pg_locks AS l
LEFT JOIN pg_class AS c ON c.oid = l.relation
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.pid <> pg_backend_pid() AND (l.relation = ANY ($1::oid[]) OR NOT l.granted)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=10_000_000, help="finished jobs in the table (default 10,000,000)")
    p.add_argument("--day-rows", type=int, default=1_000_000, help="jobs one simulated day adds and prunes")
    p.add_argument("--days", type=int, default=7, help="simulated days of churn")
    p.add_argument("--url", help="use this Postgres (its autovacuum settings as they are) instead of a dedicated one")
    p.add_argument("--out", help="JSON result path (default bench/results/prune-scale-<time>.json)")
    p.add_argument("--rate", type=int, default=200, help="probe jobs/s fed to the worker throughout")
    p.add_argument("--batch-size", type=int, default=5_000, help="retention.batch_size of the prune (engine default)")
    p.add_argument("--fill-chunk", type=int, default=250_000, help="rows per INSERT ... SELECT of the fill")
    p.add_argument("--naptime", default="1s", help="autovacuum_naptime of the dedicated server (compresses time)")
    p.add_argument("--vacuum-deadline", type=float, default=1800.0,
                   help="seconds to wait for autovacuum after each prune")
    p.add_argument("--baseline-seconds", type=float, default=5.0, help="claims timed before the churn, at rest")
    p.add_argument("--reindex", default="",
                   help="after the last day, REINDEX INDEX CONCURRENTLY these indexes of jobs (comma-separated), "
                        "claims timed meanwhile (e.g. jobs_args_idx: GIN keeps the keys of deleted rows)")
    args = p.parse_args(argv)
    if args.rows < args.day_rows or args.day_rows <= 0 or args.days <= 0:
        p.error("need --rows >= --day-rows > 0 and --days > 0")
    return args


# --- what the prober and the sampler record --------------------------------------------------


@dataclass
class Phase:
    """One stretch of the run (a day's insert, prune or vacuum wait): its samples."""

    name: str
    day: int
    start: float = field(default_factory=time.monotonic)
    end: float | None = None
    claims: list[tuple[float, float]] = field(default_factory=list)     # (at, seconds)
    starts: list[tuple[float, float]] = field(default_factory=list)     # (at, enqueue->start seconds)
    enqueues: list[tuple[float, float]] = field(default_factory=list)   # (at, seconds of the enqueue call)
    lock_modes: dict[str, set[str]] = field(default_factory=dict)       # role -> {"relname:mode"}
    waits: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    samples: int = 0

    def summary(self) -> dict[str, Any]:
        end = self.end if self.end is not None else time.monotonic()
        durations = sorted(d for _, d in self.claims)
        slow = [{"at_s": round(at - self.start, 3), "ms": round(d * 1000, 1)} for at, d in self.claims
                if d * 1000 > STALL_MS]
        latencies = [lat for _, lat in self.starts]
        table_modes = {role: sorted({m.split(":", 1)[1] for m in modes if m.split(":", 1)[0] == "jobs"})
                       for role, modes in self.lock_modes.items()}
        index_modes = {role: sorted({m.split(":", 1)[1] for m in modes if m.split(":", 1)[0] != "jobs"})
                       for role, modes in self.lock_modes.items()}
        return {
            "phase": self.name, "day": self.day, "seconds": round(end - self.start, 3),
            "claims": len(durations),
            "claim_p50_ms": _ms(_quantile(durations, 0.50)), "claim_p99_ms": _ms(_quantile(durations, 0.99)),
            "claim_max_ms": _ms(durations[-1] if durations else None),
            "claims_over_100ms": slow[:50], "claims_over_100ms_count": len(slow),
            "jobs_started": len(latencies),
            "start_latency_p99_ms": _ms(_quantile(sorted(latencies), 0.99)),
            "start_latency_max_ms": _ms(max(latencies) if latencies else None),
            "enqueue_max_ms": _ms(max((d for _, d in self.enqueues), default=None)),
            "lock_samples": self.samples,
            "lock_modes_on_jobs": table_modes,
            "lock_modes_on_indexes": index_modes,
            "lock_conflicts_with_claim": sorted({m for role, modes in table_modes.items()
                                                 if role in ("pruner", "autovacuum")
                                                 for m in modes if m in CLAIM_CONFLICTS}),
            "lock_waits": list(self.waits.values())[:50],
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Recorder:
    """Routes every sample to the current phase (none between phases)."""

    def __init__(self) -> None:
        self.phase: Phase | None = None
        self.phases: list[Phase] = []
        self.enqueue_failures: list[str] = []

    def begin(self, name: str, day: int) -> Phase:
        self.end()
        self.phase = Phase(name, day)
        self.phases.append(self.phase)
        return self.phase

    def end(self) -> None:
        if self.phase is not None:
            self.phase.end = time.monotonic()
            self.phase = None


# --- the worker that claims beside the prune --------------------------------------------------


async def start_prober(url: str, recorder: Recorder, concurrency: int = 16) -> Any:
    """A real worker Engine on queue ``default`` whose ``store.fetch`` (the claim) is timed."""
    from engine.core.config import build_config
    from engine.core.registry import Registry
    from engine.engine import Engine

    registry = Registry()

    @registry.handler(KIND)
    async def probe(job: Any) -> None:
        now = time.monotonic()
        if recorder.phase is not None:
            recorder.phase.starts.append((now, now - float(job.args["t"])))

    class ProbeEngine(Engine):
        async def _connect(self) -> None:
            await super()._connect()
            assert self.store is not None
            fetch = self.store.fetch

            async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
                started = time.monotonic()
                try:
                    return await fetch(*args, **kwargs)
                finally:
                    if recorder.phase is not None:
                        recorder.phase.claims.append((started, time.monotonic() - started))

            self.store.fetch = timed_fetch  # type: ignore[method-assign]

    keep = 3650 * DAY  # the worker's own pruner deletes nothing: the bench prunes
    config = build_config({"database_url": url, "schema": "jobengine", "dashboard": {"enabled": False},
                           "logging": {"level": "warning"}, "queues": {"default": {"concurrency": concurrency}},
                           "retention": {"completed": keep, "cancelled": keep, "discarded": keep}})
    engine = ProbeEngine(config=config, registry=registry)
    await engine.start()
    return engine


async def feed(engine: Any, rate: int, recorder: Recorder, stop: asyncio.Event) -> int:
    """Enqueue ``rate`` jobs/s in 20 calls a second; returns how many."""
    from engine.core.job import JobSpec

    batch = max(1, rate // 20)
    interval = batch / rate
    sent = 0
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await engine.enqueue_many([JobSpec(kind=KIND, args={"t": started}) for _ in range(batch)],
                                      return_ids=True)
        except Exception as exc:  # a timed-out enqueue is a finding to report, not the bench's end
            recorder.enqueue_failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            print(f"enqueue failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        if recorder.phase is not None:
            recorder.phase.enqueues.append((started, time.monotonic() - started))
        sent += batch
        next_at = max(next_at + interval, time.monotonic() - 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
    return sent


async def sample_locks(url: str, oids: list[int], recorder: Recorder, pruner_pid: dict[str, int],
                       stop: asyncio.Event) -> None:
    """Every 50 ms: the locks held on jobs and its indexes, by role, and every lock waited for."""
    conn = await asyncpg.connect(url, server_settings={"application_name": "prune_scale sampler"})
    try:
        while not stop.is_set():
            phase = recorder.phase
            if phase is not None:
                rows = await conn.fetch(LOCKS, oids)
                at = time.monotonic()
                roles = {r["pid"]: _role(r, pruner_pid.get("pid")) for r in rows}
                phase.samples += 1
                for r in rows:
                    role = roles[r["pid"]]
                    if r["granted"] and r["relname"]:  # an extension lock is no table lock: named apart
                        mode = r["mode"] if r["locktype"] == "relation" else f"{r['locktype']} {r['mode']}"
                        phase.lock_modes.setdefault(role, set()).add(f"{r['relname']}:{mode}")
                    elif not r["granted"]:
                        key = (r["pid"], r["locktype"], r["mode"], r["relname"])
                        seen = phase.waits.setdefault(key, {
                            "role": role, "locktype": r["locktype"], "mode": r["mode"], "relation": r["relname"],
                            "first_at_s": round(at - phase.start, 3), "blockers": [
                                roles.get(b, f"pid {b}") for b in (r["blockers"] or [])]})
                        seen["last_at_s"] = round(at - phase.start, 3)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)
    finally:
        await conn.close()


def _role(row: asyncpg.Record, pruner: int | None) -> str:
    if row["pid"] == pruner:
        return "pruner"
    if row["backend_type"] == "autovacuum worker":
        return "autovacuum"
    if row["application_name"] == "jobengine":
        return "engine"
    return row["application_name"] or row["backend_type"] or "other"


# --- fill, sizes, autovacuum -----------------------------------------------------------------


async def fill(conn: asyncpg.Connection, first: int, last: int, base: float, day_rows: int, chunk: int,
               log: Any = None) -> float:
    """Insert finished jobs ``first..last`` (inclusive) in chunks; returns the seconds it took."""
    started = time.monotonic()
    for lo in range(first, last + 1, chunk):
        hi = min(last, lo + chunk - 1)
        await conn.execute(FILL, lo, hi, base, day_rows, SPREAD, TRACEBACK)
        if log is not None:
            log(f"  filled {hi + 1 - first:,} / {last + 1 - first:,} rows")
    return time.monotonic() - started


async def sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    stats = await conn.fetchrow(TABLE_STATS)
    indexes = {r["relname"]: r["bytes"] for r in await conn.fetch(SIZES)}
    count = await conn.fetchval("SELECT count(*) FROM jobengine.jobs")
    return {"rows": count, "heap": stats["heap"], "toast": stats["toast"], "indexes": indexes,
            "indexes_total": sum(indexes.values()), "total": stats["total"],
            "n_live_tup": stats["n_live_tup"], "n_dead_tup": stats["n_dead_tup"],
            "last_autovacuum": stats["last_autovacuum"].isoformat() if stats["last_autovacuum"] else None,
            "autovacuum_count": stats["autovacuum_count"],
            "last_autoanalyze": stats["last_autoanalyze"].isoformat() if stats["last_autoanalyze"] else None}


# The probe's own finished jobs: deleted after each prune (the same shape as the prune), so
# the table keeps its size however long the run. Not engine code: the prune is measured alone.
PROBE_CLEANUP = """
DELETE FROM jobengine.jobs WHERE id = ANY (ARRAY(
    SELECT id FROM jobengine.jobs WHERE kind = $1 AND state = 'completed' ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
"""

VACUUM_THRESHOLD = """
SELECT coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                 WHERE option_name = 'autovacuum_vacuum_threshold'),
                current_setting('autovacuum_vacuum_threshold')::float8)
       + coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                   WHERE option_name = 'autovacuum_vacuum_scale_factor'),
                  current_setting('autovacuum_vacuum_scale_factor')::float8) * greatest(c.reltuples, 0)
FROM pg_class AS c WHERE c.oid = $1
"""


async def wait_autovacuum(conn: asyncpg.Connection, oid: int, deadline: float) -> dict[str, Any]:
    """Wait until autovacuum has processed the table after the prune: a vacuum that began
    after now has finished. One running now began before the prune's last deletes; when it
    ends leaving fewer dead rows than the table's autovacuum threshold, autovacuum would not
    come back for them either, and that counts as done too."""
    started = time.monotonic()
    running = await conn.fetchval("SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = $1", oid)
    count = await conn.fetchval("SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = $1", oid)
    need = count + (2 if running else 1)
    out: dict[str, Any] = {"done": False, "was_running_at_prune_end": bool(running), "index_passes_seen": 0,
                           "phases_seen": []}
    while time.monotonic() - started < deadline:
        progress = await conn.fetchrow(
            "SELECT phase, index_vacuum_count FROM pg_stat_progress_vacuum WHERE relid = $1", oid)
        if progress is not None:
            out["index_passes_seen"] = max(out["index_passes_seen"], progress["index_vacuum_count"])
            if not out["phases_seen"] or out["phases_seen"][-1] != progress["phase"]:
                out["phases_seen"].append(progress["phase"])
        stats = await conn.fetchrow("SELECT autovacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relid = $1",
                                    oid)
        threshold = await conn.fetchval(VACUUM_THRESHOLD, oid)
        if stats["autovacuum_count"] >= need or (
                stats["autovacuum_count"] > count and progress is None and stats["n_dead_tup"] < threshold):
            out.update(done=True, vacuums=stats["autovacuum_count"] - count, dead_left=stats["n_dead_tup"],
                       threshold=round(threshold))
            break
        await asyncio.sleep(0.25)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


async def server_settings(conn: asyncpg.Connection, description: str) -> dict[str, str]:
    """The settings the report names; stops when autovacuum cannot run (nothing to measure)."""
    names = ("server_version", "autovacuum", "track_counts", "autovacuum_naptime", "autovacuum_vacuum_cost_limit",
             "autovacuum_vacuum_cost_delay", "maintenance_work_mem", "shared_buffers", "max_wal_size")
    settings = {name: await conn.fetchval(f"SHOW {name}") for name in names}
    if settings["autovacuum"] != "on" or settings["track_counts"] != "on":
        raise SystemExit(f"autovacuum is off on {description} (autovacuum={settings['autovacuum']}, "
                         f"track_counts={settings['track_counts']}): this bench measures the table as "
                         "autovacuum keeps it; run it without --url (a dedicated server)")
    return settings


async def reindex(conn: asyncpg.Connection, names: list[str], initial: dict[str, Any], recorder: Recorder, day: int,
                  log: Any) -> dict[str, Any]:
    """REINDEX INDEX CONCURRENTLY each index, claims timed meanwhile; sizes after."""
    names = [name for name in names if name]
    unknown = sorted(set(names) - set(initial["indexes"]))
    if unknown:
        raise SystemExit(f"--reindex: no such index on jobengine.jobs: {', '.join(unknown)}")
    phase = recorder.begin("reindex", day)
    for name in names:
        log(f"REINDEX INDEX CONCURRENTLY jobengine.{name} ...")
        await conn.execute(f'REINDEX INDEX CONCURRENTLY jobengine."{name}"')
    recorder.end()
    return {"indexes": names, "summary": phase.summary(), "sizes": await sizes(conn)}


# --- the run ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from engine.core.config import RetentionConfig
    from engine.db.migrate import migrate
    from engine.db.store import JobStore
    from engine.maintenance.pruner import Pruner

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)

    load_start = os.getloadavg()
    started = time.monotonic()
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    initial_days = max(1, round(args.rows / args.day_rows))
    rows = initial_days * args.day_rows
    results: dict[str, Any] = {"args": vars(args), "server": server.description, "rows": rows,
                               "initial_days": initial_days}
    with server:
        if args.url:
            url = args.url
        else:
            server.psql(server.url, f"ALTER SYSTEM SET autovacuum_naptime = '{args.naptime}'")
            server.psql(server.url, "SELECT pg_reload_conf()")
            url = server.create_database("bench_prune")
        conn = await asyncpg.connect(url, server_settings={"application_name": "prune_scale"})
        try:
            settings = results["settings"] = await server_settings(conn, server.description)
            log(f"{server.description}; autovacuum_naptime {settings['autovacuum_naptime']}"
                + ("" if args.url else " (set low to compress time: a real day gives autovacuum hours)"))
            await conn.execute("DROP SCHEMA IF EXISTS jobengine CASCADE")
            await migrate(conn, "jobengine")
            oid = await conn.fetchval("SELECT 'jobengine.jobs'::regclass::oid")
            oids = [oid, *[r["indexrelid"] for r in await conn.fetch(
                "SELECT indexrelid FROM pg_index WHERE indrelid = $1", oid)]]
            reloptions = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1", oid)
            results["reloptions"] = list(reloptions or [])
            now = await conn.fetchval("SELECT extract(epoch FROM now())::float8")
            clock_offset = now - time.time()  # the server's clock decides what has expired
            base = now - (initial_days + args.days + PAST_DAYS) * DAY

            log(f"filling {rows:,} finished jobs over {initial_days} simulated days, chunks of {args.fill_chunk:,} ...")
            fill_seconds = await fill(conn, 0, rows - 1, base, args.day_rows, args.fill_chunk,
                                      log if rows > 4 * args.fill_chunk else None)
            vacuum_started = time.monotonic()
            await conn.execute("VACUUM ANALYZE jobengine.jobs")
            results["fill"] = {"seconds": round(fill_seconds, 1), "rows_per_s": round(rows / fill_seconds),
                               "vacuum_analyze_seconds": round(time.monotonic() - vacuum_started, 1)}
            await conn.execute("CHECKPOINT")
            log(f"filled in {fill_seconds:.0f} s, VACUUM ANALYZE {results['fill']['vacuum_analyze_seconds']} s")

            recorder = Recorder()
            stop = asyncio.Event()
            pruner_pid: dict[str, int] = {}
            engine = await start_prober(url, recorder)
            store = JobStore(url, schema="jobengine", pool_size=1)
            await store.open()
            sampler = asyncio.create_task(sample_locks(url, oids, recorder, pruner_pid, stop))
            feeder = asyncio.create_task(feed(engine, args.rate, recorder, stop))
            try:
                await asyncio.sleep(2.0)  # the worker warms up
                recorder.begin("baseline", 0)
                await asyncio.sleep(args.baseline_seconds)
                recorder.end()
                results["initial"] = await sizes(conn)
                days: list[dict[str, Any]] = []
                for k in range(1, args.days + 1):
                    day = initial_days + k - 1
                    recorder.begin("insert", k)
                    insert_seconds = await fill(conn, day * args.day_rows, (day + 1) * args.day_rows - 1, base,
                                                args.day_rows, args.fill_chunk)
                    recorder.begin("prune", k)
                    async with store.pool.acquire() as c:
                        pruner_pid["pid"] = await c.fetchval("SELECT pg_backend_pid()")
                    cutoff = base + k * DAY - CUTOFF_BEFORE_DAY
                    retention = time.time() + clock_offset - cutoff
                    statements: list[float] = []
                    prune = store.prune

                    async def timed_prune(*a: Any, _prune: Any = prune, _out: list[float] = statements) -> int:
                        t = time.monotonic()
                        try:
                            return int(await _prune(*a))
                        finally:
                            _out.append(time.monotonic() - t)

                    store.prune = timed_prune  # type: ignore[method-assign]
                    pruner = Pruner(store, RetentionConfig(completed=retention, cancelled=retention,
                                                           discarded=retention, batch_size=args.batch_size))
                    t0 = time.monotonic()
                    deleted = await pruner.prune_once()
                    prune_seconds = time.monotonic() - t0
                    store.prune = prune  # type: ignore[method-assign]
                    recorder.begin("probe cleanup", k)
                    probe_deleted = 0
                    while True:
                        status = await conn.execute(PROBE_CLEANUP, KIND, args.batch_size)
                        probe_deleted += int(status.split()[-1])
                        if int(status.split()[-1]) < args.batch_size:
                            break
                    recorder.begin("vacuum", k)
                    vacuum = await wait_autovacuum(conn, oid, args.vacuum_deadline)
                    recorder.end()
                    after = await sizes(conn)
                    days.append({"day": k, "inserted": args.day_rows, "insert_seconds": round(insert_seconds, 1),
                                 "deleted": deleted, "expected": args.day_rows,
                                 "prune_seconds": round(prune_seconds, 2), "prune_statements": len(statements),
                                 "prune_statement_max_ms": _ms(max(statements, default=None)),
                                 "probe_jobs_deleted": probe_deleted,
                                 "autovacuum": vacuum, "sizes": after})
                    by = {p.name: p.summary() for p in recorder.phases if p.day == k}
                    days[-1]["phases"] = by
                    pr = by["prune"]
                    log(f"day {k}: inserted {args.day_rows:,} in {insert_seconds:.1f} s; pruned {deleted:,} in "
                        f"{prune_seconds:.1f} s (claims: {pr['claims']}, p99 {pr['claim_p99_ms']} ms, max "
                        f"{pr['claim_max_ms']} ms, over 100 ms: {pr['claims_over_100ms_count']}); autovacuum "
                        f"{'after ' + str(vacuum['seconds']) + ' s' if vacuum['done'] else 'NOT seen'}; heap "
                        f"{after['heap'] / 2**20:,.0f} MB, indexes {after['indexes_total'] / 2**20:,.0f} MB")
                results["days"] = days
                results["baseline"] = recorder.phases[0].summary()
                if args.reindex:
                    results["reindex"] = await reindex(conn, args.reindex.split(","), results["initial"], recorder,
                                                       args.days + 1, log)
            finally:
                stop.set()
                sent = await feeder
                await sampler
                await store.close()
                await engine.stop()
            results["probe_jobs"] = sent
            results["enqueue_failures"] = recorder.enqueue_failures
            results["final"] = days[-1]["sizes"]  # once autovacuum has processed the table after the last prune
        finally:
            await conn.close()
    load_end = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["cores"] = os.cpu_count()
    results["machine"] = (f"{os.cpu_count()} cores, Python {platform.python_version()}; load average "
                          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    results["ratios"] = ratios(results["initial"], results["final"])
    return results


def ratios(initial: dict[str, Any], final: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in ("heap", "toast", "indexes_total", "total"):
        out[name] = round(final[name] / initial[name], 3) if initial[name] else None
    for name, size in initial["indexes"].items():
        out[name] = round(final["indexes"].get(name, 0) / size, 3) if size else None
    return out


# --- report ----------------------------------------------------------------------------------


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """The report: per day the prune and the claims beside it, then the sizes."""
    days = results.get("days", [])
    out = [f"prune at scale: {results['rows']:,} finished jobs ({results['initial_days']} days of "
           f"{results['args']['day_rows']:,}), {len(days)} days of churn, probe {results['args']['rate']} jobs/s",
           f"server: {results['server']}; autovacuum_naptime {results['settings']['autovacuum_naptime']}, "
           f"cost limit {results['settings']['autovacuum_vacuum_cost_limit']}, "
           f"maintenance_work_mem {results['settings']['maintenance_work_mem']}",
           f"jobs reloptions: {', '.join(results.get('reloptions', [])) or '-'}",
           f"machine: {results['machine']}; run {results['seconds']:,.0f} s",
           f"fill: {results['fill']['seconds']:,.0f} s ({results['fill']['rows_per_s']:,} rows/s), "
           f"VACUUM ANALYZE {results['fill']['vacuum_analyze_seconds']} s; heap "
           f"{results['initial']['heap'] / max(1, results['initial']['rows']):,.0f} bytes per row"
           if "initial" in results else ""]
    base = results.get("baseline")
    if base:
        out.append(f"claims at rest ({base['seconds']:.0f} s): {base['claims']} claims, p50 {base['claim_p50_ms']} ms, "
                   f"p99 {base['claim_p99_ms']} ms, max {base['claim_max_ms']} ms; "
                   f"enqueue->start max {base['start_latency_max_ms']} ms")
    out.append("")
    rows = []
    for d in days:
        p = d["phases"]["prune"]
        worst = max((s for s in p["claims_over_100ms"]), key=lambda s: s["ms"], default=None)
        rows.append([str(d["day"]), _num(d["deleted"]), f"{d['prune_seconds']:.1f}", str(d["prune_statements"]),
                     _num(d["prune_statement_max_ms"]), _num(p["claims"]), _num(p["claim_p99_ms"]),
                     _num(p["claim_max_ms"]),
                     "no" if worst is None else f"{p['claims_over_100ms_count']} (worst {worst['ms']} ms "
                                                f"at +{worst['at_s']} s)",
                     _num(p["start_latency_max_ms"]), ",".join(p["lock_modes_on_jobs"].get("pruner", [])) or "-",
                     str(len(p["lock_waits"]))])
    out.append("During each prune:")
    out.append(_table(["day", "deleted", "prune s", "stmts", "stmt max ms", "claims", "claim p99 ms",
                       "claim max ms", "claim > 100 ms", "enq->start max ms", "pruner locks on jobs",
                       "lock waits"], rows))
    rows = []
    for d in days:
        for name in ("insert", "probe cleanup", "vacuum"):
            p = d["phases"][name]
            vac = d["autovacuum"]
            rows.append([str(d["day"]), name, f"{p['seconds']:.1f}", _num(p["claims"]), _num(p["claim_p99_ms"]),
                         _num(p["claim_max_ms"]), str(p["claims_over_100ms_count"]), _num(p["start_latency_max_ms"]),
                         ",".join(p["lock_modes_on_jobs"].get("autovacuum", [])) or "-",
                         str(len(p["lock_waits"])),
                         "" if name != "vacuum" else ("done" if vac["done"] else "NOT SEEN")
                         + f", {vac['index_passes_seen']} index pass(es) seen"])
    out += ["", "Around it (the day's insert; the probe's own jobs deleted; the wait for autovacuum):"]
    out.append(_table(["day", "phase", "s", "claims", "claim p99 ms", "claim max ms", "> 100 ms", "enq->start max ms",
                       "autovacuum locks on jobs", "lock waits", "autovacuum"], rows))
    conflicts = sorted({m for d in days for p in d["phases"].values() for m in p["lock_conflicts_with_claim"]})
    waits = [w for d in days for p in d["phases"].values() for w in p["lock_waits"]]
    out.append(f"locks conflicting with a claim held by the pruner or autovacuum: {', '.join(conflicts) or 'none'}; "
               f"lock waits seen: {len(waits)}")
    if "initial" in results:
        out += ["", "Sizes, MB (after each day: once autovacuum has processed the table after its prune):"]
        snaps = [("initial", results["initial"])] + [(f"day {d['day']}", d["sizes"]) for d in days]
        names = ["heap", "toast", *sorted(results["initial"]["indexes"]), "indexes_total", "total"]
        rows = []
        for name in names:
            def get(s: dict[str, Any], n: str = name) -> int | None:
                return s["indexes"].get(n) if n in s["indexes"] else s.get(n)
            ratio = results.get("ratios", {}).get(name)
            first, initial = get(snaps[min(1, len(snaps) - 1)][1]), get(snaps[0][1]) or 0
            small = " (< 1 MB)" if initial < 2**20 else ""
            growth = ("-" if len(snaps) < 3 or not initial or first is None
                      else f"{((get(snaps[-1][1]) or 0) - first) / initial / (len(snaps) - 2) * 100:+.1f} %")
            rows.append([name, *(_mb(get(s)) for _, s in snaps),
                         "-" if ratio is None else f"{ratio:.3f}{small}", growth])
        rows.append(["rows (count)", *(_num(s["rows"]) for _, s in snaps), "", ""])
        rows.append(["n_dead_tup", *(_num(s["n_dead_tup"]) for _, s in snaps), "", ""])
        rows.append(["n_live_tup", *(_num(s["n_live_tup"]) for _, s in snaps), "", ""])
        rows.append(["autovacuums", *(_num(s["autovacuum_count"]) for _, s in snaps), "", ""])
        out.append(_table(["relation", *(n for n, _ in snaps), "final/initial", "per day after day 1"], rows))
        cleaned = sum(d.get("probe_jobs_deleted", 0) for d in days)
        out.append(f"probe jobs: {results.get('probe_jobs', 0):,} sent, {cleaned:,} of them deleted by the bench "
                   "after each prune (not counted in 'deleted')")
        day_rows, rows_total = results["args"]["day_rows"], results["rows"]
        out.append(f"a day's rows go in before its oldest day is pruned: without bloat the heap and the indexes on ids "
                   f"and times peak at about 1 + day_rows/rows = {1 + day_rows / rows_total:.2f} x their initial size; "
                   "'per day after day 1' is the steady growth beyond that (of the initial size)")
    reindex = results.get("reindex")
    if reindex:
        p = reindex["summary"]
        initial = results["initial"]["indexes"]
        out.append(f"REINDEX INDEX CONCURRENTLY after the last day, {p['seconds']:.1f} s: claims {p['claims']}, p99 "
                   f"{p['claim_p99_ms']} ms, max {p['claim_max_ms']} ms, over 100 ms: {p['claims_over_100ms_count']}, "
                   f"enqueue->start max {p['start_latency_max_ms']} ms, lock waits {len(p['lock_waits'])}; "
                   + "; ".join(f"{name} {_mb(results['final']['indexes'][name])} -> "
                               f"{_mb(reindex['sizes']['indexes'][name])} MB "
                               f"({reindex['sizes']['indexes'][name] / initial[name]:.3f} x initial)"
                               for name in reindex["indexes"]))
    return "\n".join(out)


def run() -> None:
    args = parse_args()
    results = asyncio.run(main(args))
    print(render(results))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else out_dir / f"prune-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    run()
