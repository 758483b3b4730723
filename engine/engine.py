"""The Engine facade and composition root: builds the queue, executor, producers and
housekeeping from one Config and runs them in one task group."""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog

from engine.core.config import Config, load_config
from engine.core.context import Resources
from engine.core.events import Events
from engine.core.job import Job, JobSpec
from engine.core.registry import Registry, default_registry
from engine.core.secrets import Secrets
from engine.cron.schedule import CronEntry
from engine.cron.store import CronStatus, CronStore, config_entries
from engine.cron.ticker import CronTicker
from engine.db.embedded import EmbeddedPostgres
from engine.db.store import JobQueue
from engine.insert.dependencies import DependencySweeper
from engine.insert.followups import Followups, with_notification_queue
from engine.insert.inserter import Inserter
from engine.maintenance.lifeline import Lifeline
from engine.maintenance.pruner import Pruner
from engine.maintenance.stager import Stager
from engine.queues.acker import Acker
from engine.queues.executor import Executor
from engine.queues.limits import QueueLimits
from engine.queues.notifier import Notifier
from engine.queues.producer import Producer

log = structlog.get_logger("jobengine")


class Engine:
    """One jobengine process: the queues in its config, cron, housekeeping.

    An engine whose config has no ``[queues]`` only inserts (for web apps).

    Example::

        async with Engine(config="config/jobengine.toml") as engine:
            job = await engine.enqueue("log", {"level": "info", "message": "hello"})
    """

    def __init__(self, database_url: str | None = None, config: str | Path | Config | None = None, *,
                 registry: Registry | None = None, env: Mapping[str, str] | None = None) -> None:
        self.config = config if isinstance(config, Config) else load_config(config, env=env)
        self.config = with_notification_queue(self.config)  # flow control: failure notifications' own queue
        self.database_url = database_url or self.config.database_url
        self.registry = registry or default_registry
        self._import_modules()
        self.secrets = Secrets.from_env(self.config.secrets, env)
        self.node = self.config.node_name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.events = Events()
        self.inserter = Inserter(self.registry, self.secrets)
        self.queue: JobQueue | None = None
        self.producers: dict[str, Producer] = {}
        self.notifier: Notifier | None = None
        self.lifeline: Lifeline | None = None
        self.acker: Acker | None = None
        self._stager: Stager | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._started = False
        self._host: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._controls_stale = asyncio.Event()
        self._control_generation = 0  # bumped by every control message; see _sync_controls_loop
        self._grace = self.config.shutdown_grace
        self.hurried = False  # set by hurry(): the stop did not wait out the grace period
        self.resources = Resources(self.config)
        self.cron_entries = config_entries(self.config)  # a bad entry fails here, naming it
        self.cron: CronStore | None = None
        self._cron_ticker: CronTicker | None = None
        self.executor = Executor(registry=self.registry, resources=self.resources, secrets=self.secrets,
                                 followups=Followups(self.inserter, self.config), events=self.events)

    def _import_modules(self) -> None:
        from handlers import register_builtin

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
        try:
            await self._connect()
            assert self.queue is not None
            self.cron = CronStore(self.queue, self.inserter, self.cron_entries)
            if self.processing:
                ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._host = asyncio.create_task(self._host_main(ready), name=f"jobengine {self.node}")
                await ready
        except BaseException:
            await self._close()
            self._started = False
            raise

    async def _connect(self) -> None:
        url = self.database_url
        if url is None:
            self._embedded = EmbeddedPostgres(self.config.embedded_data_dir)
            url = await self._embedded.start()
            self.database_url = url
        self.queue = JobQueue(url, schema=self.config.schema_name, pool_size=self.config.pool_size,
                              query_timeout=self.config.query_timeout)
        failures = 0
        while True:
            try:
                await self.queue.open()
                await self.queue.migrate()
                return
            except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
                if isinstance(exc, asyncpg.InvalidCatalogNameError | asyncpg.InvalidPasswordError):
                    raise
                await self.queue.close()
                failures += 1
                delay = min(10.0, 0.2 * 2**failures) * (0.5 + random.random())
                log.warning("database unreachable; retrying", error=str(exc), retry_in=round(delay, 2))
                await anyio.sleep(delay)

    def _build_services(self, controls: dict[str, dict[str, Any]]) -> None:
        assert self.queue is not None
        self.acker = Acker(self.queue)
        for name, settings in self.config.queues.items():
            control = controls.get(name, {})
            self.producers[name] = Producer(
                name, concurrency=control.get("concurrency") or settings.concurrency,
                paused=bool(control.get("paused", settings.paused)), queue=self.queue, executor=self.executor,
                acker=self.acker, node=self.node, poll_interval=self.config.poll_interval,
                limits=QueueLimits.from_config(settings))
        self._stager = Stager(self.queue, poll_interval=self.config.poll_interval)
        self.notifier = Notifier(self.queue, on_insert=self._on_insert, on_control=self._on_control,
                                 on_reconnect=self._wake_all, check_interval=self.config.lifeline.heartbeat_interval)
        self.lifeline = Lifeline(self.queue, node=self.node, queues=list(self.producers),
                                 config=self.config.lifeline, on_recovered=self._on_recovered,
                                 on_lease_lost=self._on_lease_lost, known_jobs=self._known_jobs,
                                 claim_grace=2 * self.config.query_timeout + 5.0,
                                 on_discarded=lambda job: self.executor.followups.on_discarded(job, job.errors[-1]))
        assert self.cron is not None
        self._cron_ticker = CronTicker(self.cron)

    async def _host_main(self, ready: asyncio.Future[None]) -> None:
        """The engine's host task: owns the task group of every service and producer."""
        assert self.queue is not None
        try:
            self._build_services(await self.queue.queue_controls())
            assert self.lifeline is not None and self.acker is not None and self.notifier is not None
            await self.lifeline.beat()
            async with anyio.create_task_group() as group:
                for service in (self.acker.run, self.notifier.run, self._stager.run,  # type: ignore[union-attr]
                                self.lifeline.run, Pruner(self.queue, self.config.retention).run,
                                self._sync_controls_loop, self._cron_ticker.run,  # type: ignore[union-attr]
                                DependencySweeper(self.queue).run):
                    group.start_soon(service)
                for producer in self.producers.values():
                    group.start_soon(producer.run)
                log.info("engine started", node=self.node, queues={n: p.limit for n, p in self.producers.items()})
                ready.set_result(None)
                await self._stop_requested.wait()
                with anyio.CancelScope(shield=True):
                    await self._stop_processing(self._grace)
                group.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running jobs finish within ``grace`` seconds (default from
        config), then cancel them and put them back without spending an attempt."""
        if not self._started:
            return
        self._started = False
        self._grace = self.config.shutdown_grace if grace is None else grace
        self._stop_requested.set()
        with anyio.CancelScope(shield=True):
            try:
                if self._host is not None:
                    await self._host
            finally:
                self._host = None
                await self._close()

    async def _stop_processing(self, grace: float) -> None:
        assert self.queue is not None and self.acker is not None
        async with anyio.create_task_group() as stopping:
            for producer in self.producers.values():
                stopping.start_soon(producer.stop, grace)
        # Bounded: with the database gone, unwritten acks' jobs are rescued and run again.
        with anyio.move_on_after(self.config.query_timeout):
            await self.acker.flush()
        released = [job_id for producer in self.producers.values() for job_id in producer.released]
        try:
            if released:
                count = await self.queue.release(released, self.node)
                log.info("returned unfinished jobs to the queue", count=count)
            if self.lifeline is not None:
                await self.lifeline.retire()
            await self.queue.delete_node(self.node)
            log.info("engine stopped", node=self.node, released=len(released))
        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
            log.warning("could not release jobs at shutdown; rescue will return them", error=str(exc))

    async def _close(self) -> None:
        await self.resources.aclose()
        if self.queue is not None:
            await self.queue.close()
        if self._embedded is not None:
            await self._embedded.stop()

    # --- notifications --------------------------------------------------------------------

    def _on_insert(self, queue_name: str) -> None:
        producer = self.producers.get(queue_name)
        if producer is not None:
            producer.notify()
        if self._stager is not None:
            self._stager.wake()

    def _on_recovered(self) -> None:
        """Heartbeats land again after a database fault: retry everything now."""
        self._wake_all()
        if self.acker is not None:
            self.acker.nudge()
        if self.notifier is not None:
            self.notifier.nudge()

    def _known_jobs(self) -> list[int]:
        """Jobs this node runs, has stopped but not yet released, or has yet to ack."""
        ids = [job_id for producer in self.producers.values() for job_id in (*producer.running, *producer.released)]
        return ids + (self.acker.pending_ids() if self.acker is not None else [])

    def _on_lease_lost(self, silent_for: float) -> None:
        """No heartbeat landed for nearly ``rescue_after``: stop every running job before
        another node may rescue it (see engine/maintenance/lifeline.py)."""
        stopped = sum(producer.lose_lease(silent_for) for producer in self.producers.values())
        log.error("stopped running jobs: this node cannot reach the database", jobs=stopped,
                  silent_for=round(silent_for, 1))

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
            return {"healthy": self.queue is not None and self._started, "mode": "insert-only"}
        running = self._host is not None and not self._host.done()
        database = self.lifeline is not None and self.lifeline.healthy
        listener = self.notifier.state if self.notifier is not None else "connecting"
        age = self.lifeline.heartbeat_age if self.lifeline is not None else None
        return {"healthy": running and database and listener in ("connected", "unavailable"),
                "running": running, "database": database, "listener": listener,
                "heartbeat_age": None if age is None else round(age, 3),
                "pending_acks": self.acker.pending if self.acker is not None else 0}

    def hurry(self) -> None:
        """During :meth:`stop`: end the grace period now, so running jobs are cancelled
        and returned to the queue at once (the CLI's second signal)."""
        self.hurried = True
        self._grace = 0.0
        for producer in self.producers.values():
            producer.hurry()

    def _wake_all(self) -> None:
        """After the listener (re)connects: notifications may have been missed."""
        for producer in self.producers.values():
            producer.notify()
        if self._stager is not None:
            self._stager.wake()
        self._controls_stale.set()

    async def _sync_controls_loop(self) -> None:
        """Apply pause/scale from the database after a reconnect and every heartbeat, so a
        control message published while this node was not listening is never lost."""
        assert self.queue is not None
        while True:
            with anyio.move_on_after(self.config.lifeline.heartbeat_interval):
                await self._controls_stale.wait()
            self._controls_stale.clear()
            generation = self._control_generation
            try:
                controls = await self.queue.queue_controls()
            except Exception as exc:  # a database fault must not end the loop
                log.warning("reading queue controls failed", error=str(exc) or type(exc).__name__)
                continue
            if generation != self._control_generation:
                self._controls_stale.set()  # a control arrived meanwhile: this read may predate it
                continue
            for name, producer in self.producers.items():
                control = controls.get(name)
                if control is None:
                    continue
                if control["paused"] != producer.paused:
                    producer.pause() if control["paused"] else producer.resume()
                wanted = control["concurrency"] or self.config.queues[name].concurrency
                if wanted != producer.limit:
                    producer.scale(wanted)

    def _on_control(self, message: dict[str, Any]) -> None:
        action = message.get("action")
        self._control_generation += 1
        if action == "cron":
            if self._cron_ticker is not None:
                self._cron_ticker.wake()
            return
        if action == "cancel":
            for running in self.producers.values():
                running.cancel_job(int(message.get("id", 0)))
            return
        target = self.producers.get(str(message.get("queue")))
        if target is None:
            return
        if action == "pause":
            target.pause()
        elif action == "resume":
            target.resume()
        elif action == "scale" and isinstance(message.get("concurrency"), int):
            target.scale(message["concurrency"])

    # --- enqueue --------------------------------------------------------------------------

    @property
    def _queue(self) -> JobQueue:
        if self.queue is None:
            raise RuntimeError("engine not started: use `async with Engine(...) as engine`")
        return self.queue

    async def enqueue(self, kind: str, args: dict[str, Any] | None = None, *, queue: str | None = None,
                      priority: int | None = None, delay: float | None = None,
                      scheduled_at: datetime | None = None, max_attempts: int | None = None,
                      timeout: float | None = None, tags: Sequence[str] = (), unique: Any = None,
                      vars: dict[str, Any] | None = None, on_success: dict[str, Any] | None = None,
                      on_failure: dict[str, Any] | None = None, condition: str | None = None,
                      failure_notification: dict[str, Any] | None = None, backoff: dict[str, Any] | None = None,
                      depends_on: Sequence[int] = (), conn: asyncpg.Connection | None = None) -> Job:
        """Insert one job and return it (the existing one for a unique duplicate).

        ``delay`` and ``timeout`` are seconds. With ``conn``, the insert joins the caller's
        transaction: the job exists if and only if it commits.

        Example::

            job = await engine.enqueue("http", {"method": "GET", "url": "https://example.com"},
                                       priority=10, delay=5.0, max_attempts=3)
        """
        spec = JobSpec(kind=kind, args=args if args is not None else {}, queue=queue, priority=priority,
                       delay=delay, scheduled_at=scheduled_at, max_attempts=max_attempts, timeout=timeout,
                       tags=tuple(tags), unique=unique, vars=vars or {}, on_success=on_success,
                       on_failure=on_failure, condition=condition, failure_notification=failure_notification,
                       backoff=backoff, depends_on=tuple(depends_on))
        (job,) = await self.enqueue_many([spec], conn=conn)
        return job

    async def enqueue_many(self, specs: Sequence[JobSpec | Mapping[str, Any]], *,
                           conn: asyncpg.Connection | None = None) -> list[Job]:
        """Insert a batch in one round trip. Items are JobSpecs or job documents (camelCase
        dicts with ``jobType``). Nothing is inserted if any item is invalid."""
        resolved = [self._to_spec(item) for item in specs]
        rows = self.inserter.rows(resolved)
        return await self._queue.insert(rows, conn=conn)

    async def enqueue_document(self, document: Mapping[str, Any], *, kind: str | None = None,
                               conn: asyncpg.Connection | None = None) -> Job:
        """Insert a job document (SPEC §4), e.g. ``{"jobType": "log", "data": {...}, "delay": 5000}``."""
        from engine.core.documents import parse_document

        (job,) = await self.enqueue_many([parse_document(document, kind=kind)], conn=conn)
        return job

    @staticmethod
    def _to_spec(item: JobSpec | Mapping[str, Any]) -> JobSpec:
        if isinstance(item, JobSpec):
            return item
        from engine.core.documents import parse_document

        return parse_document(item)

    # --- operator actions -------------------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        return await self._queue.get(job_id)

    async def list_jobs(self, *, state: str | None = None, queue: str | None = None, kind: str | None = None,
                        tag: str | None = None, search: str | None = None, before_id: int | None = None,
                        limit: int = 50) -> list[Job]:
        """Jobs newest first, filtered; pass the last id as ``before_id`` for the next page.
        Every filter reads an index, so this stays fast on a table of millions."""
        return await self._queue.dashboard_job_page(state=state, queue=queue, kind=kind, tag=tag, search=search,
                                                    before=before_id, limit=limit)

    async def cancel(self, job_id: int, reason: str = "cancelled by operator") -> bool:
        """Cancel a job that has not finished; an executing one is stopped on its node.
        Returns False when the job is finished or absent."""
        cancelled = await self._queue.cancel(job_id, reason)
        if cancelled is None:
            return False
        if cancelled["previous"] == "executing":
            await self._publish({"action": "cancel", "id": job_id})
        return True

    async def retry(self, job_id: int) -> bool:
        """Run a job again now (any state but executing). Returns False when not possible."""
        return await self._queue.retry(job_id)

    async def delete(self, job_id: int) -> bool:
        """Delete a job that is not executing."""
        return await self._queue.delete(job_id)

    async def pause(self, queue: str) -> None:
        """Stop every node from starting jobs of ``queue`` (running ones finish); persists."""
        await self._queue.set_paused(queue, True)
        await self._publish({"action": "pause", "queue": queue})

    async def resume(self, queue: str) -> None:
        """Undo :meth:`pause` on every node."""
        await self._queue.set_paused(queue, False)
        await self._publish({"action": "resume", "queue": queue})

    async def scale(self, queue: str, concurrency: int) -> None:
        """Set ``queue``'s per-node concurrency on every node; persists."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        await self._queue.set_concurrency(queue, concurrency)
        await self._publish({"action": "scale", "queue": queue, "concurrency": concurrency})

    async def stats(self) -> dict[str, dict[str, int]]:
        """Job counts per queue and state, e.g. ``{"default": {"completed": 10, "available": 2}}``."""
        return await self._queue.stats()

    async def _publish(self, message: dict[str, Any]) -> None:
        import json

        await self._queue.notify(self._queue.statements.control_channel, json.dumps(message))
        self._on_control(message)  # apply locally at once; the echo is idempotent

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
