"""The Postgres job queue: the only module that talks to Postgres.

Everything here is one named statement from :mod:`engine.db.sql` plus the Python
needed to pass parameters and read rows. Callers never see SQL.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from engine.core.job import FINISHED_STATES, Job
from engine.db import sql
from engine.db.migrate import Migration, migrate
from engine.insert.dependencies import dependencies_of, missing_dependencies
from engine.insert.inserter import EnqueueError
from engine.queues.limits import ClaimWindow

Listener = Callable[[str, str], None]
# Flow control: how often a unique insert re-tries when the key's holder leaves under it,
# a dependent insert re-tries locking its dependencies, and how deep a cancel cascades.
UNIQUE_RETRIES = 5
DEPENDENCY_LOCK_RETRIES = 60
MAX_CASCADE_DEPTH = 1_000

# SQLSTATE classes worth retrying: connection exceptions, transaction rollbacks
# (serialization, deadlock), insufficient resources (too many connections), operator
# intervention (shutdown, restart, query cancelled); plus lock_not_available and a
# read-only transaction (a failover promoting another server).
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
TRANSIENT_SQLSTATES = ("55P03", "25006")


def is_transient(exc: BaseException) -> bool:
    """True for database faults that retrying later may cure (the network, a restart, a
    timeout); False for errors that would repeat (bad SQL or data, a dropped table)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES or state in TRANSIENT_SQLSTATES
    if isinstance(exc, ValueError):  # asyncpg's client-side DataError: the input itself is bad
        return False
    # InternalClientError: a connection left in a broken state by a fault ("another operation
    # is in progress"); the pool replaces it.
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError)


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one, not one per call


def _json_dumps(value: Any) -> str:
    return _JSON_ENCODER.encode(value)


def _insert_columns(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """JOB_INSERT_MANY's twelve column arrays. ``args_json`` is the inserter's encoding of
    ``args`` (reused: it already had to measure it); empty meta and tags skip the encoder."""
    columns: list[list[Any]] = [[] for _ in range(12)]
    (queue, kind, args, meta, priority, max_attempts, timeout, scheduled_at, delay, tags,
     unique_key, unique_states) = columns
    for row in rows:
        queue.append(row["queue"])
        kind.append(row["kind"])
        args.append(row.get("args_json") or _json_dumps(row["args"]))
        meta.append(_json_dumps(row["meta"]) if row["meta"] else "{}")
        priority.append(row["priority"])
        max_attempts.append(row["max_attempts"])
        timeout.append(row["timeout"])
        scheduled_at.append(row["scheduled_at"])
        delay.append(row["delay"])
        tags.append(_json_dumps(row["tags"]) if row["tags"] else None)
        unique_key.append(row["unique_key"])
        unique_states.append(_json_dumps(row["unique_states"]) if row["unique_states"] else None)
    return columns


def _holds_key(job: Job | None, row: dict[str, Any]) -> bool:
    """Flow control: True when ``job`` still holds the unique key ``row`` asked for."""
    return job is not None and job.state in (row.get("unique_states") or ())


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(pg_type, encoder=_json_dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook. asyncpg's default runs a reset query (``RESET ALL; UNLISTEN *;
    CLOSE ALL; pg_advisory_unlock_all()``): one more round trip after every fetch and ack.
    jobengine leaves no session state on pooled connections (LISTEN has its own
    connection, advisory locks are transaction-scoped), and asyncpg still rolls back an
    open transaction before this hook runs, so skipping the query is safe."""


async def open_connection(url: str, *, timeout: float = 10.0,
                          application_name: str = "jobengine") -> asyncpg.Connection:
    """A single connection with jobengine's JSON codecs; every query on it times out
    after ``timeout`` seconds, so a silent connection cannot hang its user."""
    conn = await asyncpg.connect(url, timeout=timeout, command_timeout=timeout,
                                 server_settings={"application_name": application_name[:63]})
    await _init_connection(conn)
    return conn


@dataclass(frozen=True, slots=True)
class Ack:
    """The outcome of one attempt, to be written by :meth:`JobQueue.finish`.

    ``followups`` are insert rows (see :meth:`JobQueue.insert`) written in the same
    transaction, only if this ack is applied: a chain's child exists exactly when its
    parent finished.
    """

    job_id: int
    attempt: int
    attempted_at: datetime
    state: str
    result: Any = None
    delay: float | None = None
    refund: bool = False
    error: dict[str, Any] | None = None
    followups: tuple[dict[str, Any], ...] = ()


def _inserted_jobs(rows: Sequence[dict[str, Any]], records: Sequence[asyncpg.Record]) -> list[Job]:
    """Jobs for the rows JOB_INSERT_MANY inserted, from the rows themselves plus what Postgres
    set (id, state, times). Records come in id order: plain rows in input order, unique
    rows matched by key (a key repeated in one batch is inserted once, for its first row)."""
    plain = iter([row for row in rows if not row.get("unique_key")])
    keyed: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("unique_key"):
            keyed.setdefault(row["unique_key"], row)
    jobs = []
    for r in records:
        key = r["unique_key"]
        row = keyed[key] if key is not None else next(plain)
        jobs.append(Job(id=r["id"], queue=row["queue"], kind=row["kind"], args=row["args"], state=r["state"],
                        priority=row["priority"], max_attempts=row["max_attempts"], scheduled_at=r["scheduled_at"],
                        inserted_at=r["inserted_at"], tags=list(row["tags"] or ()), meta=row["meta"],
                        timeout=row["timeout"], unique_key=key))
    return jobs


class JobQueue:
    """Postgres access for one engine: a pool, the rendered statements, and one method
    per operation.

    Example::

        queue = JobQueue(url, schema="jobengine")
        await queue.open()
        jobs = await queue.fetch("default", limit=10, node="node-1")
    """

    def __init__(self, url: str, *, schema: str = "jobengine", pool_size: int = 10,
                 query_timeout: float = 10.0) -> None:
        self.url = url
        self.schema = schema
        self.statements = sql.render(schema)
        self._pool_size = pool_size
        self._query_timeout = query_timeout
        self._pool: asyncpg.Pool | None = None

    # --- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool (raises if Postgres is unreachable)."""
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            command_timeout=self._query_timeout,
            init=_init_connection,
            reset=_keep_session,
            server_settings={"application_name": "jobengine"},
            timeout=self._query_timeout,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:  # a graceful close waits on every connection: a silent one would hang it
                await asyncio.wait_for(pool.close(), self._query_timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the job queue is not open; use `async with Engine(...)` or `await engine.start()`")
        return self._pool

    @asynccontextmanager
    async def connection(self, conn: asyncpg.Connection | None = None):  # type: ignore[no-untyped-def]
        """The caller's connection when given, else one from the pool."""
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as pooled:
                yield pooled

    async def migrate(self) -> list[Migration]:
        """Apply pending migrations on a connection of its own, without the per-query
        timeout: building an index on a large table may take minutes."""
        conn = await asyncpg.connect(self.url, timeout=self._query_timeout,
                                     server_settings={"application_name": "jobengine migrate"})
        try:
            return await migrate(conn, self.schema)
        finally:
            await conn.close()

    async def ping(self) -> bool:
        """True when Postgres answers within the query timeout."""
        try:
            async with self.pool.acquire(timeout=self._query_timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=self._query_timeout)
            return True
        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
            return False

    # --- insert -----------------------------------------------------------------

    async def insert(self, rows: Sequence[dict[str, Any]], *, conn: asyncpg.Connection | None = None) -> list[Job]:
        """Insert rows (dicts with the JOB_INSERT_MANY fields) in one statement; return
        one Job per row, in order: the new job, or the existing one holding its unique key."""
        if not rows:
            return []
        async with self.connection(conn) as c:
            if any(dependencies_of(row) for row in rows):  # flow control: jobs with dependsOn
                return await self._insert_waiting(c, rows)
            jobs, _new = await self._insert_rows(c, rows)
            return jobs

    async def _insert_rows(self, conn: asyncpg.Connection, rows: Sequence[dict[str, Any]],
                           retries: int = UNIQUE_RETRIES) -> tuple[list[Job], set[int]]:
        """JOB_INSERT_MANY (JOB_INSERT_MANY_PLAIN when no row has a unique key); returns one
        Job per row and the ids this call created."""
        keyed = any(row.get("unique_key") for row in rows)
        statement = self.statements.JOB_INSERT_MANY if keyed else self.statements.JOB_INSERT_MANY_PLAIN
        records = await conn.fetch(statement, *_insert_columns(rows), self.statements.insert_channel)
        inserted = _inserted_jobs(rows, records)
        jobs, again = await self._match_inserted(conn, rows, inserted, retries)
        return jobs, {job.id for job in inserted} | again

    async def _match_inserted(self, conn: asyncpg.Connection, rows: Sequence[dict[str, Any]],
                              inserted: list[Job], retries: int) -> tuple[list[Job], set[int]]:
        by_key = {job.unique_key: job for job in inserted if job.unique_key is not None}
        plain = iter(job for job in inserted if job.unique_key is None)
        missing = [row["unique_key"] for row in rows if row.get("unique_key") and row["unique_key"] not in by_key]
        created: set[int] = set()
        if missing:
            records = await conn.fetch(self.statements.JOB_GET_BY_UNIQUE_KEYS, missing)
            holders = {r["unique_key"]: Job.from_record(r) for r in records}
            # Flow control: a holder that left its unique states (or was deleted) between the
            # skipped insert and this read no longer holds the key: insert again, so the
            # caller gets the job that now holds it (possibly its own), never a stale one.
            gone = [row for row in rows if row.get("unique_key") in missing
                    and not _holds_key(holders.get(row["unique_key"]), row)]
            if gone and retries > 0:
                again, created = await self._insert_rows(conn, gone, retries - 1)
                holders.update({job.unique_key: job for job in again if job.unique_key is not None})
            by_key = {**holders, **by_key}
        result = []
        for row in rows:
            key = row.get("unique_key")
            if key and key not in by_key:
                raise RuntimeError(f"unique key {key[:12]}... changed hands {UNIQUE_RETRIES} times during one insert")
            result.append(by_key[key] if key else next(plain))
        return result, created

    # --- claim and finish ---------------------------------------------------------

    async def fetch(self, queue: str, limit: int, node: str) -> list[Job]:
        """Claim up to ``limit`` available jobs of ``queue`` for ``node``."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_FETCH_AVAILABLE, queue, limit, node)
        return [Job.from_claim(r) for r in records]

    async def finish(self, acks: Sequence[Ack]) -> set[int]:
        """Write a batch of acks (and the followups of those applied) in one transaction.
        Returns the ids whose ack applied; the others were stale (rescued, cancelled, re-claimed)."""
        if not any(a.followups for a in acks):  # one statement is atomic: skip the BEGIN/COMMIT round trips
            async with self.pool.acquire() as conn:
                applied = await self._set_states(conn, acks)
                # Flow control: after the commit is fine (the settle sees it); a crash in between
                # leaves the dependents to the DependencySweeper.
                await self._settle_dependents_of(conn, acks, applied)
                return set(applied)
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await self._set_states(conn, acks)
            followups = [row for a in acks if a.job_id in applied for row in a.followups]
            if followups:
                await self.insert(followups, conn=conn)
            await self._settle_dependents_of(conn, acks, applied)
        return set(applied)

    async def _set_states(self, conn: asyncpg.Connection, acks: Sequence[Ack]) -> dict[int, bool]:
        """Apply the acks; returns ``{id: has_dependents}`` for those applied."""
        s = self.statements
        fence = [[a.job_id for a in acks], [a.attempt for a in acks], [a.attempted_at for a in acks]]
        if all(a.state == "completed" and a.delay is None and not a.refund and a.error is None for a in acks):
            statement, outcome = s.JOB_COMPLETE_IF_EXECUTING, [[a.result for a in acks]]
        else:
            statement, outcome = s.JOB_SET_STATE_IF_EXECUTING, [
                [a.state for a in acks], [a.result for a in acks], [a.delay for a in acks],
                [1 if a.refund else 0 for a in acks], [a.error for a in acks]]
        records = await conn.fetch(statement, *fence, *outcome)
        return {r["id"]: r["has_dependents"] for r in records}

    async def release(self, job_ids: Sequence[int], node: str) -> int:
        """Put this node's executing jobs back as available, attempt refunded."""
        if not job_ids:
            return 0
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_RELEASE_EXECUTING, list(job_ids), node,
                                       self.statements.insert_channel)
        return len(records)

    # --- scheduling and housekeeping -------------------------------------------------

    async def stage_due(self, batch: int = 5_000) -> dict[str, int]:
        """Make due scheduled/retryable jobs available; returns counts per queue."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_STAGE_DUE, batch, self.statements.insert_channel)
        return {r["queue"]: r["staged"] for r in records}

    async def make_due(self, queue: str) -> None:
        """Make the queue's scheduled and retryable jobs due now (for tests)."""
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.JOB_MAKE_DUE, queue)

    async def next_due_in(self) -> float | None:
        """Seconds until the next scheduled/retryable job is due, None when there is none."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.JOB_NEXT_DUE_IN)  # type: ignore[no-any-return]

    async def rescue_orphaned(self, rescue_after: float, max_rescues: int, *, node: str | None = None,
                              known: Sequence[int] = (), claim_grace: float = 0.0,
                              on_discarded: Callable[[Job], Sequence[dict[str, Any]]] | None = None) -> list[Job]:
        """Return the jobs of silent nodes, and those ``node`` holds without knowing (not in
        ``known``, claimed over ``claim_grace`` seconds ago), to be retried, or discard poison
        pills; returns the jobs touched, in their new state. ``on_discarded(job)`` gives the
        follow-up rows of a discarded job, inserted in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(self.statements.JOB_RESCUE_ORPHANED, rescue_after, max_rescues,
                                       self.statements.insert_channel, node, list(known), claim_grace)
            jobs = [Job.from_record(r) for r in records]
            followups = [row for job in jobs if job.state == "discarded" and on_discarded
                         for row in on_discarded(job)]
            if followups:
                await self.insert(followups, conn=conn)
            await conn.execute(self.statements.NODE_DELETE_STALE, rescue_after * 2)
        return jobs

    async def prune(self, completed: float, cancelled: float, discarded: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs past their retention; returns how many."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(self.statements.JOB_PRUNE_FINISHED, completed, cancelled, discarded, limit)
        return int(status.split()[-1])

    async def heartbeat(self, node: str, queues: Sequence[str], meta: dict[str, Any]) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.NODE_HEARTBEAT, node, list(queues), meta)

    async def delete_node(self, node: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.NODE_DELETE, node)

    async def list_nodes(self) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.NODE_LIST)]

    # --- operator actions ---------------------------------------------------------------

    async def get(self, job_id: int, *, conn: asyncpg.Connection | None = None) -> Job | None:
        async with self.connection(conn) as c:
            record = await c.fetchrow(self.statements.JOB_GET, job_id)
        return Job.from_record(record) if record else None

    async def cancel(self, job_id: int, reason: str) -> dict[str, Any] | None:
        """Cancel an unfinished job; returns its previous state and node, None if finished/absent."""
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(self.statements.JOB_CANCEL, job_id, reason)
            if record is not None:  # flow control: jobs waiting for it are cancelled with it
                await self._settle_dependents(conn, [job_id])
        return dict(record) if record else None

    async def retry(self, job_id: int) -> bool:
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.JOB_RETRY, job_id, self.statements.insert_channel)
        return record is not None

    async def delete(self, job_id: int) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.JOB_DELETE, job_id) is not None

    async def stats(self) -> dict[str, dict[str, int]]:
        """Counts per queue and state (the queue_stats view)."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.QUEUE_STATS)
        stats: dict[str, dict[str, int]] = {}
        for r in records:
            stats.setdefault(r["queue"], {})[r["state"]] = r["count"]
        return stats

    async def set_paused(self, queue: str, paused: bool) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.QUEUE_SET_PAUSED, queue, paused)

    async def set_concurrency(self, queue: str, concurrency: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.QUEUE_SET_CONCURRENCY, queue, concurrency)

    async def queue_controls(self) -> dict[str, dict[str, Any]]:
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.QUEUE_LIST_CONTROLS)
        return {r["name"]: {"paused": r["paused"], "concurrency": r["concurrency"]} for r in records}

    async def notify(self, channel: str, payload: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.NOTIFY, channel, payload)

    # --- cron ---------------------------------------------------------------------------
    # Policy lives in engine/cron/store.py and engine/cron/ticker.py; these only run SQL.
    # An entry dict has: name, schedule, timezone, job, enabled, overlap, catch_up.

    async def cron_upsert_config(self, entries: Sequence[dict[str, Any]], now: datetime) -> list[str]:
        """Write the config's entries (each with a ``config_hash``); returns the names changed."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.CRON_UPSERT_CONFIG, _json_dumps(list(entries)), now)
        return [r["name"] for r in records]

    async def cron_insert(self, entry: dict[str, Any], now: datetime) -> bool:
        """Add a runtime entry; False when the name is taken."""
        e = entry
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.CRON_INSERT, e["name"], e["schedule"], e["timezone"],
                                       _json_dumps(e["job"]), e["enabled"], e["overlap"], e["catch_up"], now)
        return name is not None

    async def cron_update(self, entry: dict[str, Any], now: datetime) -> bool:
        """Replace an entry's definition (not its enabled flag); False when absent."""
        e = entry
        async with self.pool.acquire() as conn:
            name = await conn.fetchval(self.statements.CRON_UPDATE, e["name"], e["schedule"], e["timezone"],
                                       _json_dumps(e["job"]), e["overlap"], e["catch_up"], now)
        return name is not None

    async def cron_set_enabled(self, name: str, enabled: bool, now: datetime) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.CRON_SET_ENABLED, name, enabled, now) is not None

    async def cron_delete(self, name: str) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.CRON_DELETE, name) is not None

    async def cron_list(self, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        """Every entry (by name) with its bookkeeping and its last job's state."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.CRON_LIST, enabled_only)
        return [{**dict(r), "job": json.loads(r["job"])} for r in records]

    async def cron_fire(self, name: str, slot: datetime, schedule: str, timezone: str,
                        build_row: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[str, Job | None]:
        """Insert the job of one slot, at most once ever, in one transaction with the claim.
        ``build_row(job_document)`` makes the insert row (raising rolls the claim back).
        Returns ("inserted", job), ("skipped", None) under overlap 'skip', or ("taken", None)
        when the slot was claimed already, by any process, or the entry changed."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            claim = await conn.fetchrow(s.CRON_CLAIM_SLOT, name, slot, schedule, timezone)
            if claim is None:
                return "taken", None
            if claim["still_running"]:
                return "skipped", None
            (job,) = await self.insert([build_row(json.loads(claim["job"]))], conn=conn)
            await conn.execute(s.CRON_SET_LAST_JOB, name, job.id)
        return "inserted", job

    # --- dashboard ----------------------------------------------------------------------
    # Reads for engine.web and engine.metrics; every one stays cheap on a large table.

    async def dashboard_queue_names(self) -> list[str]:
        """Queues that hold at least one job (a loose index scan)."""
        async with self.pool.acquire() as conn:
            return [r["queue"] for r in await conn.fetch(self.statements.DASHBOARD_QUEUE_NAMES)]

    async def dashboard_counts(self, queues: Sequence[str], cap: int) -> dict[str, dict[str, tuple[int, bool]]]:
        """``{queue: {state: (count, exact)}}``: exact below ``cap``, else the planner's
        estimate (never below ``cap``) with ``exact`` False."""
        s = self.statements
        counts: dict[str, dict[str, tuple[int, bool]]] = {}
        async with self.pool.acquire() as conn:
            for r in await conn.fetch(s.DASHBOARD_QUEUE_COUNTS, list(queues), cap):
                counts.setdefault(r["queue"], {})[r["state"]] = (r["count"], r["count"] < cap)
            for queue, states in counts.items():
                for state, (_count, exact) in states.items():
                    if not exact:
                        plan = await conn.fetchval(s.DASHBOARD_ESTIMATE_COUNT, queue, state)
                        plan = json.loads(plan) if isinstance(plan, str) else plan
                        states[state] = (max(cap, int(plan[0]["Plan"]["Plan Rows"])), False)
        return counts

    async def dashboard_oldest_available(self, queues: Sequence[str]) -> dict[str, float | None]:
        """Seconds the oldest due job of each queue has waited (None: nothing waiting)."""
        waits: dict[str, float | None] = {}
        async with self.pool.acquire() as conn:
            for name in queues:
                seconds = await conn.fetchval(self.statements.DASHBOARD_OLDEST_AVAILABLE, name)
                waits[name] = None if seconds is None else max(0.0, seconds)
        return waits

    async def dashboard_throughput(self, minutes: int, queue: str | None = None) -> list[dict[str, Any]]:
        """``[{minute, completed, failed}]`` for the minutes that had any, oldest first."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.DASHBOARD_THROUGHPUT, minutes, queue)
        return [dict(r) for r in records]

    async def dashboard_job(self, job_id: int) -> tuple[Job, dict[str, Any]] | None:
        """The job and the columns Job does not carry (cancelled_at, discarded_at, rescued)."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.DASHBOARD_JOB_GET, job_id)
        if record is None:
            return None
        extra = {k: record[k] for k in ("cancelled_at", "discarded_at", "rescued")}
        return Job.from_record(record), extra

    async def dashboard_children(self, job_id: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.DASHBOARD_JOB_CHILDREN, str(job_id))]

    async def dashboard_job_page(self, *, queue: str | None = None, state: str | None = None,
                                 kind: str | None = None, tag: str | None = None, search: str | None = None,
                                 before: int | None = None, after: int | None = None,
                                 ascending: bool = False, limit: int = 50) -> list[Job]:
        """A page of jobs in id order (newest first unless ``ascending``), filtered;
        ``before``/``after`` are keyset cursors (ids)."""
        from engine.core.job import JobState

        values = {"kind": kind, "tag": tag, "before": before, "after": after}
        names = [name for name, value in values.items() if value is not None]
        params: list[Any] = []
        if queue is not None or state is not None:
            queues = [queue] if queue is not None else await self.dashboard_queue_names()
            states = [state] if state is not None else [s.value for s in JobState]
            params = [value for q in queues for s in states for value in (q, s)]
            if not params:
                return []  # no queue holds any job yet
        pairs = len(params) // 2
        params += [values[name] for name in names]
        if search:
            params.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        text = sql.dashboard_job_page(self.schema, names, pairs=pairs, search=bool(search), ascending=ascending)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(self.statements.DASHBOARD_PLAN_CUSTOM)
            records = await conn.fetch(text, *params, limit)
        return [Job.from_record(r) for r in records]

    async def dashboard_bulk(self, action: str, job_ids: Sequence[int],
                             reason: str = "cancelled by operator") -> list[int]:
        """Apply ``retry``, ``run`` (due now), ``cancel`` (waiting jobs only) or ``delete`` to
        ``job_ids`` in one statement; returns the ids it changed."""
        s = self.statements
        ids = list(job_ids)
        async with self.pool.acquire() as conn:
            if action == "retry":
                records = await conn.fetch(s.DASHBOARD_JOB_RETRY_MANY, ids, s.insert_channel)
            elif action == "run":
                records = await conn.fetch(s.DASHBOARD_JOB_RUN_NOW_MANY, ids, s.insert_channel)
            elif action == "cancel":
                records = await conn.fetch(s.DASHBOARD_JOB_CANCEL_WAITING_MANY, ids, reason)
            elif action == "delete":
                records = await conn.fetch(s.DASHBOARD_JOB_DELETE_MANY, ids)
            else:
                raise ValueError(f"unknown bulk action {action!r}")
        return sorted(r["id"] for r in records)

    # --- flow control -------------------------------------------------------------------
    # Rate limits and global concurrency (engine/queues/limits.py), job dependencies
    # (engine/insert/dependencies.py). Only limited queues and jobs with dependsOn come here.

    async def fetch_limited(self, queue: str, limit: int, node: str, *, rate: int | None,
                            window: float | None, global_limit: int | None) -> tuple[list[Job], ClaimWindow]:
        """Claim up to ``limit`` jobs of ``queue`` within its shared limits; also returns what
        the claim saw (for the wake-up hint)."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(s.QUEUE_LIMIT_LOCK, queue) is None:
                await conn.execute(s.QUEUE_LIMIT_CREATE, queue)
                await conn.fetchval(s.QUEUE_LIMIT_LOCK, queue)
            records = await conn.fetch(s.JOB_FETCH_LIMITED, queue, limit, node, rate, window, global_limit)
        jobs = [Job.from_record(r) for r in records if r["id"] is not None]
        return jobs, ClaimWindow.from_record(records[0])

    async def _insert_waiting(self, conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> list[Job]:
        """Insert rows some of which wait for dependencies: lock and mark the dependencies,
        insert, attach ``waiting_for`` and settle at once (some may be finished already),
        all in one transaction (a savepoint inside the caller's)."""
        wanted = sorted({job_id for row in rows for job_id in dependencies_of(row)})
        for attempt in range(DEPENDENCY_LOCK_RETRIES):
            try:
                async with conn.transaction():
                    found = {r["id"]: r["state"] for r in await conn.fetch(self.statements.DEPENDENCY_LOCK, wanted)}
                    error = missing_dependencies(wanted, found)
                    if error is not None:
                        raise error
                    jobs, created = await self._insert_rows(conn, rows)
                    return await self._attach_dependencies(conn, rows, jobs, created)
            except asyncpg.LockNotAvailableError:  # a dependency is being acked or claimed right now
                await asyncio.sleep(min(0.05, 0.001 * 2**attempt) * (0.5 + random.random()))
        raise EnqueueError(f"dependsOn: jobs {wanted[:10]} stayed locked; try again")

    async def _attach_dependencies(self, conn: asyncpg.Connection, rows: Sequence[dict[str, Any]],
                                   jobs: list[Job], created: set[int]) -> list[Job]:
        s = self.statements
        waiting = [{"id": job.id, "deps": dependencies_of(row)}
                   for row, job in zip(rows, jobs, strict=True) if job.id in created and dependencies_of(row)]
        if not waiting:
            return jobs
        await conn.execute(s.DEPENDENCY_ATTACH, _json_dumps(waiting))
        settled = await conn.fetch(s.DEPENDENCY_RESOLVE_JOBS, [w["id"] for w in waiting], s.insert_channel)
        changed = {r["id"]: r for r in settled}
        await self._settle_dependents(conn, [r["id"] for r in settled if r["state"] == "cancelled"])
        return [replace(job, state=changed[job.id]["state"], scheduled_at=changed[job.id]["scheduled_at"])
                if job.id in changed else job for job in jobs]

    async def _settle_dependents_of(self, conn: asyncpg.Connection, acks: Sequence[Ack],
                                    applied: dict[int, bool]) -> None:
        """After acks: settle the jobs waiting for those that finished and have dependents."""
        finished = [a.job_id for a in acks if applied.get(a.job_id) and a.state in FINISHED_STATES]
        if finished:
            await self._settle_dependents(conn, finished)

    async def _settle_dependents(self, conn: asyncpg.Connection, finished: Sequence[int]) -> None:
        """Settle the jobs waiting for ``finished``; cancelling one settles its own waiters in turn."""
        ids = list(finished)
        for _ in range(MAX_CASCADE_DEPTH):
            if not ids:
                return
            records = await conn.fetch(self.statements.DEPENDENCY_RESOLVE_DEPENDENTS, ids,
                                       self.statements.insert_channel)
            ids = [r["id"] for r in records if r["state"] == "cancelled"]

    async def settle_waiting(self, limit: int) -> int:
        """The sweeper's pass: settle up to ``limit`` waiting jobs with a dependency already
        finished or gone; returns how many it looked at."""
        s = self.statements
        async with self.pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(s.DEPENDENCY_LIST_SETTLED, limit)]
            if ids:
                async with conn.transaction():
                    records = await conn.fetch(s.DEPENDENCY_RESOLVE_JOBS, ids, s.insert_channel)
                    await self._settle_dependents(conn, [r["id"] for r in records if r["state"] == "cancelled"])
        return len(ids)

    # --- LISTEN -----------------------------------------------------------------------

    async def open_listener(self, channels: Sequence[str], callback: Listener,
                            on_lost: Callable[[], Awaitable[None] | None] | None = None) -> asyncpg.Connection:
        """A dedicated connection LISTENing on ``channels``; ``callback(channel, payload)``."""
        conn = await open_connection(self.url, timeout=self._query_timeout,
                                     application_name=f"jobengine listener {self.schema}")
        try:
            for channel in channels:
                await conn.add_listener(channel, lambda _c, _pid, ch, payload: callback(ch, payload))
        except BaseException:
            conn.terminate()  # never leak the connection of a failed LISTEN
            raise
        if on_lost is not None:
            conn.add_termination_listener(lambda _c: on_lost())
        return conn

    async def ping_listener(self, conn: asyncpg.Connection, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` on the listening connection itself: the echo proves that
        notifications still arrive on it (a transaction pooler would lose them)."""
        await conn.execute(self.statements.NOTIFY, channel, payload, timeout=self._query_timeout)
