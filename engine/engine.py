"""The Engine facade and composition root: builds the queue, executor, producers and
housekeeping from one Config and runs them in one task group."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, overload

import anyio
import asyncpg
import structlog

from engine.core import backoff, tracing
from engine.core.config import Config, load_config
from engine.core.context import Resources
from engine.core.documents import parse_document
from engine.core.errors import DatabaseUnavailable, JobStillStopping, UniqueKeyHeld
from engine.core.events import Events
from engine.core.job import Job, JobSpec, JobState
from engine.core.logs import LOG_REDACTION
from engine.core.registry import Registry, default_registry
from engine.core.search import parse_query
from engine.core.secrets import Secrets
from engine.cron.definitions import DefinitionStore
from engine.cron.schedule import CronEntry
from engine.cron.store import CronStatus, CronStore, config_entries
from engine.db import foreign
from engine.db.embedded import EmbeddedPostgres
from engine.db.faults import CONNECTION_ERRORS, connect_failure_reason
from engine.db.store import JobStore
from engine.insert.bulk import insert_ids
from engine.insert.followups import Followups, with_notification_queue
from engine.insert.inserter import Inserter
from engine.maintenance.lifeline import Lifeline
from engine.node import NodeSupervisor
from engine.queues.acker import Acker
from engine.queues.executor import Executor
from engine.queues.inline import InlineRunner
from engine.queues.notifier import Notifier
from engine.queues.producer import Producer
from handlers.builtin import register_builtin
from handlers.mail import default_sender

log = structlog.get_logger("jobengine")


class Engine:
    """One jobengine process: the queues in its config, cron, housekeeping.

    An engine whose config has no ``[queues]`` only inserts (for web apps). ``inline=True``
    (for tests) runs each enqueued job at once in the caller's task, without a database.

    Example::

        async with Engine(config="config/jobengine.toml") as engine:
            job = await engine.enqueue("log", {"level": "info", "message": "hello"})
    """

    def __init__(self, database_url: str | None = None, config: str | Path | Config | None = None, *,
                 registry: Registry | None = None, env: Mapping[str, str] | None = None,
                 inline: bool = False) -> None:
        self.config = config if isinstance(config, Config) else load_config(config, env=env)
        self.config = with_notification_queue(self.config)  # flow control: failure notifications' own queue
        self.database_url = database_url or self.config.database_url
        self.registry = registry or default_registry
        self._import_modules()
        self.secrets = Secrets.from_env(self.config.secrets, env)
        # Log lines are scrubbed of these too: the SMTP password and the dashboard tokens.
        self._log_secrets = self.secrets.with_values(_operational_secrets(self.config, env))
        LOG_REDACTION.add(self._log_secrets)
        self.node = self.config.node_name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.events = Events()
        self.inserter = Inserter(self.registry, self.secrets)
        self.store: JobStore | None = None
        self.supervisor: NodeSupervisor | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._started = False
        self.resources = Resources(self.config)
        self.cron_entries = config_entries(self.config)  # a bad entry fails here, naming it
        self.cron: CronStore | None = None
        self.definitions: DefinitionStore | None = None  # saved jobs (cron entries among them), once started
        self.executor = Executor(registry=self.registry, resources=self.resources, secrets=self.secrets,
                                 followups=Followups(self.inserter, self.config), events=self.events)
        # Tests: enqueue runs each job at once in the caller's task, no database (engine/queues/inline.py).
        self.inline = InlineRunner(self.executor) if inline else None

    def _import_modules(self) -> None:
        register_builtin(self.registry)
        if self.config.modules and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # modules named in config are the user's, beside it
        for module in self.config.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ImportError(f"config 'modules': cannot import {module!r}: {exc}") from exc

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def processing(self) -> bool:
        """True when this engine runs queues (False: insert-only client)."""
        return bool(self.config.queues)

    async def start(self) -> None:
        """Connect (starting the embedded Postgres when no URL is set), migrate, and start
        every configured queue. May be called from one task and :meth:`stop` from another:
        the engine's tasks live in a host task that ``stop`` joins, so none is orphaned."""
        if self._started:
            raise RuntimeError("engine already started")
        self._started = True
        if self.inline is not None:
            return
        try:
            await self._connect()
            assert self.store is not None
            self.cron = CronStore(self.store, self.inserter, self.cron_entries)
            self.definitions = DefinitionStore(self.cron)
            if self.processing:
                if not self.config.smtp.from_:
                    log.info("mail without a 'from' is sent as the default sender; set [smtp].from to change it",
                             sender=default_sender())
                self.supervisor = NodeSupervisor(self.config, self.store, self.executor, self.cron, node=self.node)
                await self.supervisor.start()
        except BaseException:
            with anyio.CancelScope(shield=True):  # a start cancelled by a signal still closes what it opened
                await self._close()
            self._started = False
            raise

    async def _connect(self) -> None:
        url = self.database_url
        if url is None:
            self._embedded = EmbeddedPostgres(self.config.embedded_data_dir)
            url = await self._embedded.start()
            self.database_url = url
        self.store = JobStore(url, schema=self.config.schema_name, pool_size=self.config.pool_size,
                              query_timeout=self.config.query_timeout, listen_url=self.config.listen_url,
                              statement_cache_size=self.config.statement_cache_size)
        # A worker waits for its database for as long as it takes; an insert-only client or
        # a CLI command gives up after a bound and says why, rather than hang for ever.
        deadline = None if self.processing else time.monotonic() + 3 * self.config.query_timeout
        failures = 0
        while True:
            try:
                await self.store.open()
                await self.store.migrate()
                return
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                if isinstance(exc, asyncpg.InvalidCatalogNameError | asyncpg.InvalidPasswordError):
                    raise
                await self.store.close()
                failures += 1
                reason = connect_failure_reason(exc, self.config.query_timeout)
                delay = backoff.jittered(failures, base=0.2, cap=10.0)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(f"database not available after {failures} tries in "
                                              f"{3 * self.config.query_timeout:g}s: {reason}") from exc
                log.warning("database not available; retrying", reason=reason, retry_in=round(delay, 2))
                await anyio.sleep(delay)

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running jobs finish within ``grace`` seconds (default from
        config), then cancel them and put them back without spending an attempt."""
        if not self._started:
            return
        self._started = False
        with anyio.CancelScope(shield=True):
            try:
                if self.supervisor is not None:
                    await self.supervisor.stop(self.config.shutdown_grace if grace is None else grace)
            finally:
                await self._close()

    async def _close(self) -> None:
        await self.resources.aclose()
        if self.store is not None:
            await self.store.close()
        if self._embedded is not None:
            await self._embedded.stop()

    # --- the node's services (None / empty for an insert-only client) ------------------------

    @property
    def producers(self) -> dict[str, Producer]:
        return self.supervisor.producers if self.supervisor is not None else {}

    def running_per_queue(self) -> dict[str, int]:
        """Attempts this process holds per queue now (claimed and not yet acked)."""
        return {name: len(producer.running) for name, producer in self.producers.items()}

    @property
    def acker(self) -> Acker | None:
        return self.supervisor.acker if self.supervisor is not None else None

    @property
    def notifier(self) -> Notifier | None:
        return self.supervisor.notifier if self.supervisor is not None else None

    @property
    def lifeline(self) -> Lifeline | None:
        return self.supervisor.lifeline if self.supervisor is not None else None

    @property
    def hurried(self) -> bool:
        """True when the last stop did not wait out the grace period (see :meth:`hurry`)."""
        return self.supervisor is not None and self.supervisor.hurried

    # --- health --------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True when this engine works: started, its tasks alive, heartbeats landing, and
        LISTEN connected (or known unavailable, polling instead). For ``/healthz``."""
        return bool(self.health()["healthy"])

    def health(self) -> dict[str, Any]:
        """What :attr:`healthy` is made of, for ``/healthz`` bodies and logs, e.g.
        ``{"healthy": True, "database": True, "listener": "connected", "heartbeat_age": 0.4}``."""
        if not self.processing:
            return {"healthy": self.store is not None and self._started, "mode": "insert-only"}
        if self.supervisor is None:
            return {"healthy": False, "running": False}
        return self.supervisor.health()

    def hurry(self) -> None:
        """During :meth:`stop`: end the grace period now, so running jobs are cancelled
        and returned to the queue at once (the CLI's second signal)."""
        if self.supervisor is not None:
            self.supervisor.hurry()

    # --- enqueue --------------------------------------------------------------------------

    @property
    def _store(self) -> JobStore:
        if self.store is None and self.inline is not None:
            raise RuntimeError("inline mode has no database: enqueue returns each job finished")
        if self.store is None:
            raise RuntimeError("engine not started: use `async with Engine(...) as engine`")
        return self.store

    async def enqueue(self, kind: str, args: dict[str, Any] | None = None, *, queue: str | None = None,
                      priority: int | None = None, delay: float | None = None,
                      scheduled_at: datetime | None = None, max_attempts: int | None = None,
                      timeout: float | None = None, tags: Sequence[str] = (), unique: Any = None,
                      vars: dict[str, Any] | None = None, on_success: dict[str, Any] | None = None,
                      on_failure: dict[str, Any] | None = None, condition: str | None = None,
                      failure_notification: dict[str, Any] | None = None, backoff: dict[str, Any] | None = None,
                      depends_on: Sequence[int] = (), conn: Any = None) -> Job:
        """Insert one job and return it (the existing one for a unique duplicate).

        ``delay`` and ``timeout`` are seconds. With ``conn`` (asyncpg or psycopg 3 connection,
        SQLAlchemy AsyncConnection or AsyncSession: engine/db/foreign.py), the insert joins the
        caller's transaction: the job exists if and only if it commits.

        Example::

            job = await engine.enqueue("http", {"method": "GET", "url": "https://example.com"},
                                       priority=10, delay=5.0, max_attempts=3)
        """
        spec = JobSpec.from_options(kind, args, locals())  # every keyword below `args` is a job option
        (job,) = await self.enqueue_many([spec], conn=conn)
        return job

    @overload
    async def enqueue_many(self, specs: Sequence[JobSpec | Mapping[str, Any]], *,
                           conn: Any = None, return_ids: Literal[False] = False) -> list[Job]: ...

    @overload
    async def enqueue_many(self, specs: Sequence[JobSpec | Mapping[str, Any]], *,
                           conn: Any = None, return_ids: Literal[True]) -> list[int]: ...

    async def enqueue_many(self, specs: Sequence[JobSpec | Mapping[str, Any]], *,
                           conn: Any = None, return_ids: bool = False) -> list[Job] | list[int]:
        """Insert a batch in one round trip. Items are JobSpecs or job documents (camelCase
        dicts with ``jobType``). Nothing is inserted if any item is invalid.

        ``return_ids=True`` returns each job's id instead of its Job (validated the same way;
        the fast path for large batches, e.g. one mail to every user; over 2,000 jobs it
        inserts chunks of 1,000 in one transaction, validating each while Postgres inserts
        the one before)::

            ids = await engine.enqueue_many([JobSpec(kind="mail", args=a) for a in mails], return_ids=True)
        """
        resolved = [self._to_spec(item) for item in specs]
        with tracing.enqueue_span([spec.kind for spec in resolved]) as span:
            if return_ids and self.inline is None:  # validated exactly as below; only ids come back
                return await insert_ids(self.inserter, self._store, resolved, conn=foreign.adapt(conn))
            rows = self.inserter.rows(resolved)
            if self.inline is not None:
                jobs = await self.inline.run(rows)
            else:
                jobs = await self._store.insert(rows, conn=foreign.adapt(conn))
            tracing.enqueued(span, jobs)
            return [job.id for job in jobs] if return_ids else jobs

    async def enqueue_document(self, document: Mapping[str, Any], *, kind: str | None = None,
                               conn: Any = None) -> Job:
        """Insert a job document (docs/job-documents.md), e.g. ``{"jobType": "log", "data": {...}, "delay": 5000}``."""
        (job,) = await self.enqueue_many([parse_document(document, kind=kind)], conn=conn)
        return job

    @staticmethod
    def _to_spec(item: JobSpec | Mapping[str, Any]) -> JobSpec:
        if isinstance(item, JobSpec):
            return item
        return parse_document(item)

    # --- operator actions -------------------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        return await self._store.get(job_id)

    async def list_jobs(self, *, state: str | None = None, queue: str | None = None, kind: str | None = None,
                        tag: str | None = None, search: str | None = None, before_id: int | None = None,
                        limit: int = 50, query: str | None = None) -> list[Job]:
        """Jobs newest first, filtered; pass the last id as ``before_id`` for the next page.
        ``query`` is the search language (README, "Finding jobs"): ``kind:mail args.to:a@b.c``;
        a malformed one raises :class:`~engine.core.search.SearchError` naming the term.
        Every filter but text reads an index, so this stays fast on a table of millions.

        Example::

            failed = await engine.list_jobs(query='state:discarded error:"timed out"')
        """
        parsed = parse_query(query) if query else None
        return await self._store.dashboard_job_page(query=parsed, state=state, queue=queue, kind=kind, tag=tag,
                                                    search=search, before=before_id, limit=limit)

    def watch_changes(self, watcher: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``watcher(topic, detail)`` for each notification this node's LISTEN connection
        hears (``("insert", queue)``, ``("control", action)``); an engine that only inserts
        hears none. Returns the function that stops watching.

        Example::

            stop = engine.watch_changes(lambda topic, detail: print(topic, detail))
        """
        if self.supervisor is None:
            return lambda: None
        return self.supervisor.watch(watcher)

    async def cancel(self, job_id: int, reason: str = "cancelled by operator") -> bool:
        """Cancel a job that has not finished; an executing one is stopped on its node.
        Returns False when the job is finished or absent."""
        cancelled = await self._store.cancel(job_id, reason)
        if cancelled is None:
            return False
        if cancelled["previous"] == JobState.EXECUTING:
            await self._publish({"action": "cancel", "id": job_id})
        return True

    async def retry(self, job_id: int) -> bool:
        """Run a job again now (any state but executing). Returns False when not possible;
        raises :class:`JobStillStopping` while a cancelled job's handler may still run, and
        :class:`UniqueKeyHeld` when another job holds its unique key."""
        await self._refuse_if_key_held(job_id)
        try:
            retried = await self._store.retry(job_id)
        except asyncpg.UniqueViolationError:  # the key was taken since the check
            await self._refuse_if_key_held(job_id)
            raise
        return retried or await self._refuse_if_stopping(job_id)

    async def _refuse_if_key_held(self, job_id: int) -> None:
        holder = (await self._store.unique_holders([job_id])).get(job_id)
        if holder is not None:
            raise UniqueKeyHeld(job_id, *holder)

    async def delete(self, job_id: int) -> bool:
        """Delete a job that is not executing; raises :class:`JobStillStopping` like :meth:`retry`."""
        return await self._store.delete(job_id) or await self._refuse_if_stopping(job_id)

    async def _refuse_if_stopping(self, job_id: int) -> bool:
        node = await self._store.stopping_on(job_id)
        if node is not None:
            raise JobStillStopping(job_id, node)
        return False

    async def pause(self, queue: str) -> None:
        """Stop every node from starting jobs of ``queue`` (running ones finish); persists."""
        await self._store.set_paused(queue, True)
        await self._publish({"action": "pause", "queue": queue})

    async def resume(self, queue: str) -> None:
        """Undo :meth:`pause` on every node."""
        await self._store.set_paused(queue, False)
        await self._publish({"action": "resume", "queue": queue})

    async def scale(self, queue: str, concurrency: int) -> None:
        """Set ``queue``'s per-node concurrency on every node; persists."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        await self._store.set_concurrency(queue, concurrency)
        await self._publish({"action": "scale", "queue": queue, "concurrency": concurrency})

    async def stats(self) -> dict[str, dict[str, int]]:
        """Job counts per queue and state, e.g. ``{"default": {"completed": 10, "available": 2}}``."""
        return await self._store.stats()

    async def _publish(self, message: dict[str, Any]) -> None:
        await self._store.notify(self._store.statements.control_channel, json.dumps(message))
        if self.supervisor is not None:
            self.supervisor.apply_control(message)  # apply locally at once; the echo is idempotent

    # --- cron -------------------------------------------------------------------------------

    @property
    def _cron(self) -> CronStore:
        if self.cron is None:
            raise RuntimeError("engine not started: use `async with Engine(...) as engine`")
        return self.cron

    async def cron_add(self, name: str, schedule: str, job: dict[str, Any], *, timezone: str = "UTC",
                       enabled: bool = True, overlap: str = "allow", catch_up: float = 0.0) -> CronEntry:
        """Add a runtime cron entry (stored in Postgres, fired by every processing engine).

        Example::

            await engine.cron_add("ping", "*/5 * * * *", {"jobType": "http", "data": {"url": "..."}})
        """
        entry = CronEntry(name, schedule=schedule, timezone=timezone, job=job, enabled=enabled,
                          overlap=overlap, catch_up=catch_up)  # type: ignore[arg-type]
        return await self._cron.add(entry)

    async def cron_update(self, name: str, **changes: Any) -> CronEntry:
        """Change a cron entry's schedule, timezone, job, overlap or catch_up."""
        return await self._cron.update(name, **changes)

    async def cron_enable(self, name: str) -> bool:
        """Enable a cron entry; False when there is none by that name."""
        return await self._cron.enable(name)

    async def cron_disable(self, name: str) -> bool:
        """Disable a cron entry (it keeps its definition); False when absent."""
        return await self._cron.disable(name)

    async def cron_remove(self, name: str) -> bool:
        """Remove a runtime cron entry; False when absent."""
        return await self._cron.remove(name)

    async def cron_list(self) -> list[CronStatus]:
        """Every cron entry with its next runs (local and UTC) and last run's outcome."""
        return await self._cron.list()


def _operational_secrets(config: Config, env: Mapping[str, str] | None) -> dict[str, str | None]:
    env = os.environ if env is None else env
    smtp_password = env.get(config.smtp.password_env) if config.smtp.password_env else None
    return {"[smtp] password": smtp_password, "[dashboard].token": config.dashboard.token,
            "[dashboard].readonly_token": config.dashboard.readonly_token}
