"""The node supervisor: one processing engine's services and producers, in one task group.

:class:`NodeSupervisor` builds the acker, the notifier, the lifeline, the stager, the
pruner, the dependency sweeper, the cron ticker, the rollup, the attempt-log writer, the
alert evaluator (when the config has ``[[alerts]]``) and one producer per configured queue,
runs them in one anyio task group inside a host task (so none is orphaned), routes
control messages (pause, resume, scale, cancel, cron changes) to them, and stops them
gracefully. The :class:`engine.engine.Engine` facade owns one when it processes jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
import asyncpg
import structlog

from engine.core import backoff
from engine.core.claims import ClaimGate
from engine.core.config import Config
from engine.cron.schedule import CronConfigError, CronSchedule, missed_slot
from engine.cron.store import CronStore
from engine.cron.ticker import CronTicker
from engine.db.faults import CONNECTION_ERRORS, log_fault
from engine.db.store import JobStore
from engine.maintenance.alerts import Alerts
from engine.maintenance.attempt_log_writer import AttemptLogWriter
from engine.maintenance.lifeline import Lifeline, node_identity
from engine.maintenance.loop_watchdog import LoopWatchdog
from engine.maintenance.pruner import Pruner
from engine.maintenance.rollup import Rollup
from engine.maintenance.stager import Stager
from engine.maintenance.sweeper import DependencySweeper
from engine.queues.acker import Acker
from engine.queues.executor import Executor
from engine.queues.limits import QueueLimits
from engine.queues.notifier import Notifier
from engine.queues.producer import Producer

log = structlog.get_logger("jobengine")

# A task restarted after an unexpected end waits jittered(failures, base, cap) seconds; one
# that then runs for RESTART_CAP seconds without ending again starts its count afresh.
RESTART_BASE = 0.1
RESTART_CAP = 30.0


class NodeSupervisor:
    """The services of one processing node.

    Example::

        supervisor = NodeSupervisor(config, store, executor, cron, node="web-1.42")
        await supervisor.start()        # returns once every service runs
        await supervisor.stop(grace=30.0)
    """

    def __init__(self, config: Config, store: JobStore, executor: Executor, cron: CronStore, *, node: str) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.cron = cron
        self.node = node
        self.producers: dict[str, Producer] = {}
        self.notifier: Notifier | None = None
        self.lifeline: Lifeline | None = None
        self.acker: Acker | None = None
        self.claims = ClaimGate()  # the producers' claims in flight, for the lifeline's lost-claim rescue
        self._stager: Stager | None = None
        self._cron_ticker: CronTicker | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._controls_stale = asyncio.Event()
        self._control_generation = 0  # bumped by every control message; see _sync_controls_loop
        self._grace = config.shutdown_grace
        self.hurried = False  # set by hurry(): the stop did not wait out the grace period
        self.task_restarts: Counter[str] = Counter()  # unexpected ends of each task (for /metrics)
        self.task_names: tuple[str, ...] = ()  # every supervised task, once started (for /metrics)
        self.tasks_down: set[str] = set()  # tasks that ended unexpectedly and wait to restart
        self._watchers: list[Callable[[str, str], None]] = []
        # Notices a blocked event loop from a thread, reading the running (id, kind) from there.
        self._watchdog = LoopWatchdog(threshold=config.lifeline.stall_warning, node=node, running_jobs=lambda: [
            (r.job.id, r.job.kind) for p in list(self.producers.values()) for r in list(p.running.values())])

    def watch(self, watcher: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``watcher(topic, detail)`` for every notification the LISTEN connection hears:
        ``("insert", queue)`` and ``("control", action)`` (the dashboard pushes these to open
        pages). Runs on the event loop; it must not block. Returns the function that stops it."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher)

    def _tell_watchers(self, topic: str, detail: str) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(topic, detail)
            except Exception:  # a dashboard's bug must not stop the node hearing notifications
                log.exception("notification watcher failed", topic=topic)

    async def start(self) -> None:
        """Start the host task and return once every service and producer runs."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._host = asyncio.create_task(self._host_main(ready), name=f"jobengine {self.node}")
        await ready
        self._watchdog.start(asyncio.get_running_loop())

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running jobs finish within ``grace`` seconds, then cancel
        them and put them back; join the host task."""
        self._grace = grace
        self._stop_requested.set()
        if self._host is not None:
            try:
                await self._host
            finally:
                self._host = None
                self._watchdog.stop()

    @property
    def loop_stalls(self) -> int:  # stalls of the event loop over lifeline.stall_warning, for /metrics
        return self._watchdog.stalls

    @property
    def longest_stall_seconds(self) -> float:
        return self._watchdog.longest

    def _build_services(self, controls: dict[str, dict[str, Any]]) -> None:
        assert self.store is not None
        self.acker = Acker(self.store, on_discarded=self.executor.followups.on_discarded,
                           max_rescues=self.config.lifeline.max_rescues)
        for name, settings in self.config.queues.items():
            control = controls.get(name, {})
            self.producers[name] = Producer(
                name, concurrency=control.get("concurrency") or settings.concurrency,
                paused=bool(control.get("paused", settings.paused)), store=self.store, executor=self.executor,
                acker=self.acker, node=self.node, poll_interval=self.config.poll_interval,
                limits=QueueLimits.from_config(settings), claims=self.claims, lease_fresh=self._lease_fresh)
        self._stager = Stager(self.store, poll_interval=self.config.poll_interval)
        self.notifier = Notifier(self.store, on_insert=self._on_insert, on_control=self.apply_control,
                                 on_reconnect=self._wake_all, check_interval=self.config.lifeline.heartbeat_interval)
        self.lifeline = Lifeline(self.store, node=self.node, queues=list(self.producers),
                                 config=self.config.lifeline, on_recovered=self._on_recovered,
                                 on_lease_lost=self._on_lease_lost, known_jobs=self._known_jobs,
                                 claim_grace=2 * self.config.query_timeout + 5.0, claims=self.claims,
                                 on_discarded=lambda job: self.executor.followups.on_discarded(job, job.errors[-1]),
                                 meta=node_identity(), describe=self.describe)
        assert self.cron is not None
        self._cron_ticker = CronTicker(self.cron)

    def _attempt_log_writer(self) -> AttemptLogWriter:
        retention = self.config.retention
        return AttemptLogWriter(self.store, self.executor.attempt_logs, self.executor.events,
                                keep=max(retention.completed, retention.cancelled, retention.discarded))

    def _alerts(self) -> Alerts:
        return Alerts(self.store, self.config, self.executor.followups.inserter, node=self.node,
                      missed_slot=cron_missed_check())

    def describe(self) -> dict[str, Any]:
        """What this node's heartbeat tells the others (and the nodes page): each queue's
        concurrency, pause and running jobs."""
        return {"queues": {name: {"concurrency": p.limit, "running": len(p.running), "paused": p.paused}
                           for name, p in self.producers.items()}}

    async def _host_main(self, ready: asyncio.Future[None]) -> None:
        """The engine's host task: owns the task group of every service and producer."""
        assert self.store is not None
        try:
            self._build_services(await self.store.queue_controls())
            assert self.lifeline is not None and self.acker is not None and self.notifier is not None
            await self.lifeline.beat()
            services: dict[str, Callable[[], Awaitable[None]]] = {
                "acker": self.acker.run, "notifier": self.notifier.run, "stager": self._stager.run,  # type: ignore[union-attr]
                "lifeline": self.lifeline.run, "pruner": Pruner(self.store, self.config.retention).run,
                "controls": self._sync_controls_loop, "cron": self._cron_ticker.run,  # type: ignore[union-attr]
                "sweeper": DependencySweeper(self.store).run, "rollup": Rollup(self.store).run,
                "attempt logs": self._attempt_log_writer().run,
                **({"alerts": self._alerts().run} if self.config.alerts else {}),
                **{f"producer {name}": self._producer_task(producer) for name, producer in self.producers.items()},
            }
            self.task_names = tuple(services)
            async with anyio.create_task_group() as group:
                for name, service in services.items():
                    group.start_soon(self._supervise, name, service, name=f"jobengine {name}")
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

    async def _supervise(self, name: str, service: Callable[[], Awaitable[None]]) -> None:
        """Run ``service`` for the engine's life. Should it end early (a bug, or a stray
        CancelledError that is not the engine's own), say so at once with the traceback,
        count it, report the engine unhealthy, and start it again after a backoff: a task
        group that died silently would leave a node running, heartbeating and doing nothing."""
        failures = 0
        while not self._stop_requested.is_set():
            started = time.monotonic()
            try:
                await service()
                error: BaseException | None = None
            except Exception as exc:
                error = exc
            except asyncio.CancelledError as exc:
                if _cancelling():
                    raise
                error = exc
            if self._stop_requested.is_set():
                return
            failures = 1 if time.monotonic() - started >= RESTART_CAP else failures + 1
            delay = backoff.jittered(failures, base=RESTART_BASE, cap=RESTART_CAP)
            self.task_restarts[name] += 1
            self.tasks_down.add(name)
            log.error("engine task ended unexpectedly; restarting it", task=name, node=self.node,
                      restarts=self.task_restarts[name], retry_in=round(delay, 2),
                      exc_info=error, error=None if error is None else repr(error))
            try:
                with anyio.move_on_after(delay):
                    await self._stop_requested.wait()
            finally:
                self.tasks_down.discard(name)

    def _producer_task(self, producer: Producer) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await producer.run()
            finally:
                if not self._stop_requested.is_set():
                    await self._release_after_crash(producer)
        return run

    async def _release_after_crash(self, producer: Producer) -> None:
        """The producer ended early, cancelling its attempts: return them to the queue now
        (if the database does not answer, the lifeline's lost-claim rescue does it later)."""
        released, producer.released = producer.released, []
        if not released:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.query_timeout):
            try:
                await self.store.release(released, self.node)
            except Exception as exc:
                log_fault(log, "could not release the jobs of a failed producer", exc, job_ids=released[:20])

    async def _stop_processing(self, grace: float) -> None:
        assert self.store is not None and self.acker is not None
        async with anyio.create_task_group() as stopping:
            for producer in self.producers.values():
                stopping.start_soon(producer.stop, grace)
        # Bounded: with the database gone, unwritten acks' jobs are rescued and run again.
        with anyio.move_on_after(self.config.query_timeout):
            await self.acker.flush()
        released = [job_id for producer in self.producers.values() for job_id in producer.released]
        try:
            if released:
                count = await self.store.release(released, self.node)
                log.info("returned unfinished jobs to the queue", count=count)
            if self.lifeline is not None:
                await self.lifeline.retire()
            await self.store.delete_node(self.node)
            log.info("engine stopped", node=self.node, released=len(released))
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("could not release jobs at shutdown; rescue will return them", error=str(exc))

    # --- notifications --------------------------------------------------------------------

    def _on_insert(self, queue_name: str) -> None:
        self._tell_watchers("insert", queue_name)
        producer = self.producers.get(queue_name)
        if producer is not None:
            producer.notify()
        if self._stager is not None:
            self._stager.wake()

    def _on_recovered(self) -> None:
        """Heartbeats land again after a database fault or a stall: retry everything now."""
        for producer in self.producers.values():
            producer.regain_lease()
        self._wake_all()
        if self.acker is not None:
            self.acker.nudge()
        if self.notifier is not None:
            self.notifier.nudge()

    def _lease_fresh(self) -> bool:
        return self.lifeline is not None and self.lifeline.lease_fresh

    def _known_jobs(self) -> list[int]:
        """Jobs this node runs, has stopped but not yet released, or has yet to ack."""
        ids = [job_id for producer in self.producers.values()
               for job_id in (*producer.running_ids(), *producer.released)]
        return ids + (self.acker.pending_ids() if self.acker is not None else [])

    def _on_lease_lost(self, silent_for: float) -> None:
        """No heartbeat landed for nearly ``rescue_after``: stop every running job before
        another node may rescue it (see engine/maintenance/lifeline.py)."""
        # A stall during the silence is why heartbeats were not sent: the jobs' reasons say so.
        cause = self._watchdog.explain(silent_for)
        stopped = sum(producer.lose_lease(silent_for, cause) for producer in self.producers.values())
        log.error("stopped running jobs: this node could not heartbeat", jobs=stopped,
                  silent_for=round(silent_for, 1), cause=cause or "the database did not answer")

    @property
    def healthy(self) -> bool:
        """True when this engine works: started, its tasks alive, heartbeats landing, and
        LISTEN connected (or known unavailable, polling instead). For ``/healthz``."""
        return bool(self.health()["healthy"])

    def health(self) -> dict[str, Any]:
        """What :attr:`healthy` is made of, for ``/healthz`` bodies and logs, e.g.
        ``{"healthy": True, "database": True, "listener": "connected", "heartbeat_age": 0.4}``."""
        running = self._host is not None and not self._host.done()
        database = self.lifeline is not None and self.lifeline.healthy
        listener = self.notifier.state if self.notifier is not None else "connecting"
        age = self.lifeline.heartbeat_age if self.lifeline is not None else None
        down = sorted(self.tasks_down)
        return {"healthy": running and database and not down and listener in ("connected", "unavailable"),
                "running": running, "database": database, "listener": listener, "tasks_down": down,
                "task_restarts": dict(self.task_restarts),
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
        assert self.store is not None
        while True:
            with anyio.move_on_after(self.config.lifeline.heartbeat_interval):
                await self._controls_stale.wait()
            self._controls_stale.clear()
            generation = self._control_generation
            try:
                controls = await self.store.queue_controls()
            except Exception as exc:  # the next heartbeat's read retries
                log_fault(log, "reading queue controls failed", exc)
                continue
            if generation != self._control_generation:
                self._controls_stale.set()  # a control arrived meanwhile: this read may predate it
                continue
            await self._stop_cancelled_jobs()
            for name, producer in self.producers.items():
                control = controls.get(name)
                if control is None:
                    continue
                if control["paused"] != producer.paused:
                    producer.pause() if control["paused"] else producer.resume()
                wanted = control["concurrency"] or self.config.queues[name].concurrency
                if wanted != producer.limit:
                    producer.scale(wanted)

    async def _stop_cancelled_jobs(self) -> None:
        """Stop the jobs cancelled while this node was not listening (a missed message)."""
        try:
            stopping = await self.store.stopping_of_node(self.node)
        except Exception as exc:  # the next heartbeat's read retries
            log_fault(log, "reading cancelled jobs failed", exc)
            return
        for job_id in stopping:
            for producer in self.producers.values():
                producer.cancel_job(job_id)

    def apply_control(self, message: dict[str, Any]) -> None:
        """Apply a control message (from this node or, through LISTEN, another) to the
        producers and the cron ticker; idempotent."""
        action = message.get("action")
        self._tell_watchers("control", str(action))
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


def cron_missed_check() -> Callable[[dict[str, Any], datetime], datetime | None]:
    """The cron_missed alert's check of one cron definition's row (schedules parsed once)."""
    schedules: dict[tuple[str, str], CronSchedule | None] = {}

    def check(row: dict[str, Any], now: datetime) -> datetime | None:
        key = (row["schedule"], row["timezone"])
        if key not in schedules:
            try:
                schedules[key] = CronSchedule.parse(*key, entry=row["name"])
            except CronConfigError:  # the ticker reports it; an entry that cannot fire misses nothing
                schedules[key] = None
        schedule = schedules[key]
        if schedule is None:
            return None
        return missed_slot(schedule, now, last_slot=row["last_slot"], active_since=row["active_since"])

    return check


def _cancelling() -> bool:
    """True when this task is being cancelled (the engine stopping), not handed a stray
    CancelledError by the code it awaits."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
