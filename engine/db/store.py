"""The job store: the only code that talks to Postgres.

Every method is one named statement from :mod:`engine.db.sql` (or a short transaction of
them) plus the Python needed to pass parameters and read rows. Callers never see SQL.
Cron rows, dashboard reads and dependency bookkeeping live in their own modules
(:mod:`engine.db.cron_rows`, :mod:`engine.db.dashboard_reads`,
:mod:`engine.db.dependency_rows`, :mod:`engine.db.account_rows`) as parts of the one :class:`JobStore`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.core.acks import Ack
from engine.core.job import Job, JobState
from engine.db import sql
from engine.db.account_rows import AccountRows
from engine.db.alert_rows import AlertRows
from engine.db.attempt_log_rows import AttemptLogRows
from engine.db.connection import init_connection, keep_session, open_connection
from engine.db.cron_rows import CronRows
from engine.db.dashboard_reads import DashboardReads
from engine.db.definition_rows import DefinitionRows
from engine.db.dependency_rows import DependencyRows
from engine.db.faults import CONNECTION_ERRORS
from engine.db.migrate import Migration, migrate
from engine.db.rollup_rows import RollupRows
from engine.db.rows import ClaimWindow, InsertRow, compact_insert_columns, insert_columns, inserted_jobs
from engine.db.stopping_rows import StoppingRows
from engine.db.unique_holders import UniqueHolders

Listener = Callable[[str, str], None]


@dataclass(slots=True)
class StoreHooks:
    """Points where tests inject a race deterministically (never set in production).

    ``before_unique_lookup``: awaited after a unique insert was skipped because its key
    was held, before the holder is read back (the window in which the holder may leave)."""

    before_unique_lookup: Callable[[], Awaitable[None]] | None = None
# How often a unique insert re-tries when the key's holder leaves under it.
UNIQUE_RETRIES = 5


class JobStore(DependencyRows, CronRows, DashboardReads, AccountRows, DefinitionRows, RollupRows,
               AttemptLogRows, StoppingRows, UniqueHolders, AlertRows):
    """Postgres access for one engine: a pool, the rendered statements, and one method
    per operation.

    Example::

        store = JobStore(url, schema="jobengine")
        await store.open()
        jobs = await store.fetch("default", limit=10, node="node-1")
    """

    def __init__(self, url: str, *, schema: str = "jobengine", pool_size: int = 10,
                 query_timeout: float = 10.0, listen_url: str | None = None,
                 statement_cache_size: int = 100) -> None:
        self.url = url
        self.listen_url = listen_url or url
        self._statement_cache_size = statement_cache_size
        self.schema = schema
        self.statements = sql.render(schema)
        self._pool_size = pool_size
        self._query_timeout = query_timeout
        self._pool: asyncpg.Pool | None = None
        self.hooks = StoreHooks()

    # --- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool (raises if Postgres is unreachable)."""
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            command_timeout=self._query_timeout,
            init=init_connection,
            reset=keep_session,
            server_settings={"application_name": "jobengine"},
            timeout=self._query_timeout,
            statement_cache_size=self._statement_cache_size,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:  # a graceful close waits on every connection: a silent one would hang it
                await asyncio.wait_for(pool.close(), self._query_timeout)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError):
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the job store is not open; use `async with Engine(...)` or `await engine.start()`")
        return self._pool

    @asynccontextmanager
    async def connection(self, conn: asyncpg.Connection | None = None) -> AsyncIterator[asyncpg.Connection]:
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
                                     statement_cache_size=self._statement_cache_size,
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
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            return False

    # --- insert -----------------------------------------------------------------

    async def insert(self, rows: Sequence[InsertRow], *, conn: asyncpg.Connection | None = None) -> list[Job]:
        """Insert rows (dicts with the JOB_INSERT_MANY fields) in one statement; return
        one Job per row, in order: the new job, or the existing one holding its unique key."""
        if not rows:
            return []
        async with self.connection(conn) as c:
            if any(row.depends_on for row in rows):  # flow control: jobs with dependsOn
                return await self._insert_waiting(c, rows)
            jobs, _new = await self._insert_rows(c, rows)
            return jobs

    async def insert_ids(self, rows: Sequence[InsertRow], *, conn: asyncpg.Connection | None = None) -> list[int]:
        """:meth:`insert`, returning only each row's job id. A batch of plain rows (no unique
        key, no dependsOn) takes JOB_INSERT_MANY_IDS, which sends a column shared by every
        row once and decodes one column back; any other batch goes through :meth:`insert`."""
        if not rows:
            return []
        if any(row.unique_key or row.depends_on for row in rows):
            return [job.id for job in await self.insert(rows, conn=conn)]
        async with self.connection(conn) as c:
            records = await c.fetch(self.statements.JOB_INSERT_MANY_IDS, *compact_insert_columns(rows),
                                    self.statements.insert_channel)
        return [r[0] for r in records]

    async def _insert_rows(self, conn: asyncpg.Connection, rows: Sequence[InsertRow],
                           retries: int = UNIQUE_RETRIES) -> tuple[list[Job], set[int]]:
        """JOB_INSERT_MANY (JOB_INSERT_MANY_PLAIN when no row has a unique key); returns one
        Job per row and the ids this call created."""
        keyed = any(row.unique_key for row in rows)
        statement = self.statements.JOB_INSERT_MANY if keyed else self.statements.JOB_INSERT_MANY_PLAIN
        records = await conn.fetch(statement, *insert_columns(rows), self.statements.insert_channel)
        inserted = inserted_jobs(rows, records)
        jobs, again = await self._match_inserted(conn, rows, inserted, retries)
        return jobs, {job.id for job in inserted} | again

    async def _match_inserted(self, conn: asyncpg.Connection, rows: Sequence[InsertRow],
                              inserted: list[Job], retries: int) -> tuple[list[Job], set[int]]:
        by_key = {job.unique_key: job for job in inserted if job.unique_key is not None}
        plain = iter(job for job in inserted if job.unique_key is None)
        missing = [row.unique_key for row in rows if row.unique_key and row.unique_key not in by_key]
        created: set[int] = set()
        if missing:
            if self.hooks.before_unique_lookup is not None:
                await self.hooks.before_unique_lookup()
            records = await conn.fetch(self.statements.JOB_GET_BY_UNIQUE_KEYS, missing)
            holders = {r["unique_key"]: Job.from_record(r) for r in records}
            # Flow control: a holder that left its unique states (or was deleted) between the
            # skipped insert and this read no longer holds the key: insert again, so the
            # caller gets the job that now holds it (possibly its own), never a stale one.
            gone = [row for row in rows if row.unique_key in missing
                    and not row.held_by(holders.get(row.unique_key))]
            if gone and retries > 0:
                again, created = await self._insert_rows(conn, gone, retries - 1)
                holders.update({job.unique_key: job for job in again if job.unique_key is not None})
            by_key = {**holders, **by_key}
        result = []
        for row in rows:
            key = row.unique_key
            if key and key not in by_key:
                raise RuntimeError(f"unique key {key[:12]}... changed hands {UNIQUE_RETRIES} times during one insert")
            result.append(by_key[key] if key else next(plain))
        return result, created

    # --- claim and finish ---------------------------------------------------------

    async def fetch(self, queue: str, limit: int, node: str, *, running: Collection[int] = ()) -> list[Job]:
        """Claim up to ``limit`` available jobs of ``queue`` for ``node``, never one of the
        ``running`` ids (jobs this process still runs an attempt of)."""
        async with self.pool.acquire() as conn:
            if running:
                records = await conn.fetch(self.statements.JOB_FETCH_AVAILABLE_EXCEPT, queue, limit, node,
                                           list(running))
            else:
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
        if all(a.plain_completion for a in acks):
            statement, outcome = s.JOB_COMPLETE_IF_EXECUTING, [[a.result for a in acks]]
        else:
            statement, outcome = s.JOB_SET_STATE_IF_EXECUTING, [
                [a.state for a in acks], [a.result for a in acks], [a.delay for a in acks],
                [1 if a.refund else 0 for a in acks], [a.error for a in acks]]
        records = await conn.fetch(statement, *fence, *outcome)
        return {r["id"]: r["has_dependents"] for r in records}

    async def return_lease_lost(self, acks: Sequence[Ack], max_rescues: int, *,
                                on_discarded: Callable[[Job, dict[str, Any]], Sequence[InsertRow]] | None = None,
                                ) -> set[int]:
        """Write lease-lost acks (:meth:`Ack.lease_lost`): each job goes back unspent and the
        stop counts as a rescue; one stopped so more than ``max_rescues`` times is discarded
        (:meth:`Ack.lease_discard_error`), with the follow-up rows ``on_discarded(job, error)``
        gives, in the same transaction. Returns the ids whose ack applied."""
        discard_errors = [a.lease_discard_error(max_rescues).as_dict() for a in acks]
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                self.statements.JOB_RETURN_LEASE_LOST, [a.job_id for a in acks], [a.attempt for a in acks],
                [a.attempted_at for a in acks], [a.error for a in acks], max_rescues, discard_errors,
                self.statements.insert_channel)
            discarded = [r for r in records if r["state"] == JobState.DISCARDED]
            followups = [row for r in discarded if on_discarded is not None
                         for job in [Job.from_record(r)] for row in on_discarded(job, job.errors[-1])]
            if followups:
                await self.insert(followups, conn=conn)
            await self._settle_dependents(conn, [r["id"] for r in discarded if r["has_dependents"]])
        return {r["id"] for r in records}

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
                              on_discarded: Callable[[Job], Sequence[InsertRow]] | None = None) -> list[Job]:
        """Return the jobs of silent nodes, and those ``node`` holds without knowing (not in
        ``known``, claimed over ``claim_grace`` seconds ago), to be retried, or discard poison
        pills; returns the jobs touched, in their new state. ``on_discarded(job)`` gives the
        follow-up rows of a discarded job, inserted in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(self.statements.JOB_RESCUE_ORPHANED, rescue_after, max_rescues,
                                       self.statements.insert_channel, node, list(known), claim_grace)
            jobs = [Job.from_record(r) for r in records]
            followups = [row for job in jobs if job.state == JobState.DISCARDED and on_discarded
                         for row in on_discarded(job)]
            if followups:
                await self.insert(followups, conn=conn)
            by_node: dict[str, list[int]] = {}
            for job in jobs:
                by_node.setdefault(job.attempted_by or "?", []).append(job.id)
            for name, ids in by_node.items():  # for the nodes page: what each lost node left behind
                await conn.execute(self.statements.NODE_RECORD_RESCUED, name, ids)
            await conn.execute(self.statements.NODE_DELETE_STALE, rescue_after * 2)
            await conn.execute(self.statements.NODE_DEPARTED_PRUNE)
        return jobs

    async def prune(self, completed: float, cancelled: float, discarded: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs past their retention; returns how many."""
        async with self.pool.acquire() as conn:
            status = await conn.execute(self.statements.JOB_PRUNE_FINISHED, completed, cancelled, discarded, limit)
        return int(status.split()[-1])

    async def heartbeat(self, node: str, queues: Sequence[str], meta: dict[str, Any], *,
                        takeover_after: float = 0.0) -> bool:
        """Register or heartbeat ``node``; False (nothing written) when another live process
        with another ``meta["instance"]`` holds the name (see NODE_HEARTBEAT)."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(self.statements.NODE_HEARTBEAT, node, list(queues), meta,
                                       takeover_after) is not None

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


    # --- LISTEN -----------------------------------------------------------------------

    async def open_listener(self, channels: Sequence[str], callback: Listener,
                            on_lost: Callable[[], Awaitable[None] | None] | None = None) -> asyncpg.Connection:
        """A dedicated connection LISTENing on ``channels``; ``callback(channel, payload)``."""
        conn = await open_connection(self.listen_url, timeout=self._query_timeout,
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
