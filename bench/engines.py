"""One adapter per engine, each used the way its documentation recommends for speed:

- jobengine: ``Engine.enqueue_many(..., return_ids=True)`` (one statement per batch); a worker ``Engine`` with
  one queue at the bench concurrency.
- pgqueuer: ``Queries.enqueue`` with lists (one statement per batch) over an asyncpg
  connection; ``PgQueuer(AsyncpgDriver(conn)).run(batch_size=..., max_concurrent_tasks=...)``.
- procrastinate: ``Task.batch_defer_async`` over ``PsycopgConnector``;
  ``App.run_worker_async(concurrency=...)`` with LISTEN/NOTIFY.

The client side (enqueue, count, seed) runs in the bench's parent process; ``serve``
runs in the worker subprocess (bench/worker.py) and calls ``on_job(payload)`` once per
job, from inside the engine's handler.

Example::

    adapter = ADAPTERS["jobengine"](url)
    await adapter.open(); await adapter.install(); await adapter.enqueue_many([{}] * 100)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import asyncpg

OnJob = Callable[[dict[str, Any]], None]
KIND = "bench.noop"


class Adapter:
    """The operations every workload needs; subclasses implement them per engine."""

    name = "?"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = options or {}
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.url)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def sql(self, query: str, *args: Any) -> Any:
        assert self.conn is not None
        return await self.conn.fetchval(query, *args)

    async def install(self) -> None: ...
    async def clear(self) -> None: ...
    async def enqueue_many(self, payloads: list[dict[str, Any]]) -> None: ...
    async def enqueue_one(self, payload: dict[str, Any]) -> None: ...
    async def unfinished(self) -> int:
        raise NotImplementedError
    async def seed_finished(self, count: int) -> None: ...
    async def serve(self, concurrency: int, on_job: OnJob, stop: asyncio.Event) -> None: ...

    def describe(self, concurrency: int) -> str:
        return ""


# --- jobengine -------------------------------------------------------------------------


def _jobengine_registry(on_job: OnJob | None) -> Any:
    from engine.core.registry import Registry

    registry = Registry()

    @registry.handler(KIND)
    async def noop(job: Any) -> None:
        if on_job is not None:
            on_job(job.args)

    return registry


# jobengine options the bench reads itself (not engine settings): `ablate` (bench/ablation.py),
# `enqueue_jobs` (true: bulk enqueue through the Job-returning enqueue_many, the round-1 path).
BENCH_ONLY_OPTIONS = ("ablate", "enqueue_jobs")


def _jobengine_config(url: str, concurrency: int | None, options: dict[str, Any]) -> Any:
    from engine.core.config import build_config

    settings: dict[str, Any] = {"database_url": url, "schema": "jobengine", "dashboard": {"enabled": False},
                                "logging": {"level": "warning"}}
    if concurrency:
        settings["queues"] = {"default": {"concurrency": concurrency}}
    settings.update({k: v for k, v in options.items() if k not in BENCH_ONLY_OPTIONS})
    return build_config(settings)


class JobengineAdapter(Adapter):
    name = "jobengine"

    async def open(self) -> None:
        from bench import ablation
        from engine.engine import Engine

        ablation.apply(self.options.get("ablate", []))
        await super().open()
        self.client = Engine(config=_jobengine_config(self.url, None, {}), registry=_jobengine_registry(None))
        await self.client.start()  # insert-only: connects and migrates

    async def close(self) -> None:
        await self.client.stop()
        await super().close()

    async def clear(self) -> None:
        assert self.conn is not None
        await self.conn.execute("TRUNCATE jobengine.jobs; TRUNCATE jobengine.nodes")

    async def enqueue_many(self, payloads: list[dict[str, Any]]) -> None:
        from engine.core.job import JobSpec

        specs = [JobSpec(kind=KIND, args=p) for p in payloads]
        if self.options.get("enqueue_jobs"):
            await self.client.enqueue_many(specs)
        else:  # validated like the other, returns ids only (as pgqueuer's enqueue does)
            await self.client.enqueue_many(specs, return_ids=True)

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.client.enqueue(KIND, payload)

    async def unfinished(self) -> int:
        # One count per partial index (fetch, executing, staging): `state IN (all four)` matches
        # none of their predicates and scanned the whole table, 1 s at 10,000,000 finished rows.
        return int(await self.sql(
            "SELECT (SELECT count(*) FROM jobengine.jobs WHERE state = 'available')"
            " + (SELECT count(*) FROM jobengine.jobs WHERE state = 'executing')"
            " + (SELECT count(*) FROM jobengine.jobs WHERE state IN ('scheduled', 'retryable'))"))

    async def seed_finished(self, count: int) -> None:
        assert self.conn is not None
        # Finished over the past six days, oldest first, as a table under the default week's
        # retention holds them (a table finished all "now" would put every seeded row in the
        # minutes the overview, the rollup and the alerts read).
        await self.conn.execute(f"""
            INSERT INTO jobengine.jobs (queue, kind, args, state, attempt, attempted_at, completed_at,
                                        attempted_by, scheduled_at, inserted_at)
            SELECT 'default', '{KIND}', jsonb_build_object('i', i), 'completed', 1, t, t, 'seed', t, t
            FROM generate_series(1, {int(count)}) AS i,
                 LATERAL (SELECT now() - interval '6 days' * (1 - i::float8 / {int(count)})
                                 - interval '1 minute') AS at(t)""")
        # A running engine rolled those minutes up for the charts as they passed; a fresh one
        # would spend the measured drain catching up on six days (engine/maintenance/rollup.py).
        await self.conn.execute("UPDATE jobengine.job_rollup_state SET rolled_until = date_trunc('minute', now())")

    async def serve(self, concurrency: int, on_job: OnJob, stop: asyncio.Event) -> None:
        from bench import ablation
        from engine.engine import Engine

        ablation.apply(self.options.get("ablate", []))  # docs/performance.md: what each change bought
        config = _jobengine_config(self.url, concurrency, self.options)
        if config.dashboard.enabled:  # imported before the engine starts, as `jobengine run` has it
            from engine.web.server import serve
        async with Engine(config=config, registry=_jobengine_registry(on_job)) as engine:
            if not config.dashboard.enabled:
                await stop.wait()
                return
            async with serve(engine):  # bench/dashboard_on.py
                await stop.wait()

    def describe(self, concurrency: int) -> str:
        return f"Engine, queue concurrency {concurrency}"


# --- pgqueuer --------------------------------------------------------------------------


class PgqueuerAdapter(Adapter):
    name = "pgqueuer"

    async def open(self) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        await super().open()
        self.queries = Queries(AsyncpgDriver(await asyncpg.connect(self.url)))

    async def install(self) -> None:
        if not await self.queries.schema_is_installed():
            await self.queries.install()

    async def clear(self) -> None:
        await self.queries.clear_queue()
        await self.queries.clear_queue_log()
        await self.queries.clear_statistics_log()

    async def enqueue_many(self, payloads: list[dict[str, Any]]) -> None:
        n = len(payloads)
        await self.queries.enqueue([KIND] * n, [json.dumps(p).encode() for p in payloads], [0] * n)

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.queries.enqueue(KIND, json.dumps(payload).encode())

    async def unfinished(self) -> int:
        return int(await self.sql("SELECT count(*) FROM pgqueuer"))

    async def seed_finished(self, count: int) -> None:
        # pgqueuer deletes finished jobs from its queue table; their history is the log table.
        assert self.conn is not None
        await self.conn.execute(f"""
            INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint)
            SELECT i, 'successful', 0, '{KIND}' FROM generate_series(1, {int(count)}) AS i""")

    def _settings(self, concurrency: int) -> tuple[int, int | None]:
        batch = int(self.options.get("batch_size", max(1, concurrency // 2)))
        limit = self.options.get("max_concurrent_tasks", concurrency)
        return batch, (int(limit) if limit else None)

    async def serve(self, concurrency: int, on_job: OnJob, stop: asyncio.Event) -> None:
        from datetime import timedelta

        from pgqueuer import AsyncpgDriver, PgQueuer

        pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(self.url)))

        @pgq.entrypoint(KIND, concurrency_limit=int(self.options.get("entrypoint_limit", 0)))
        async def noop(job: Any) -> None:
            on_job(json.loads(job.payload) if job.payload else {})

        batch, limit = self._settings(concurrency)
        runner = asyncio.create_task(pgq.run(batch_size=batch, max_concurrent_tasks=limit,
                                             dequeue_timeout=timedelta(seconds=1)))
        await asyncio.wait([runner, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        pgq.shutdown.set()
        await runner

    def describe(self, concurrency: int) -> str:
        batch, limit = self._settings(concurrency)
        return f"PgQueuer+AsyncpgDriver, batch_size {batch}, max_concurrent_tasks {limit}"


# --- procrastinate ---------------------------------------------------------------------


class ProcrastinateAdapter(Adapter):
    name = "procrastinate"

    def _app(self, on_job: OnJob | None) -> Any:
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=self.url, min_size=1, max_size=int(self.options.get("pool_size", 10))))

        @app.task(name=KIND)
        async def noop(**kwargs: Any) -> None:
            if on_job is not None:
                on_job(kwargs)

        self.task = noop
        return app

    async def open(self) -> None:
        await super().open()
        self.app = self._app(None)
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()
        await super().close()

    async def install(self) -> None:
        if not await self.sql("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"):
            await self.app.schema_manager.apply_schema_async()

    async def clear(self) -> None:
        assert self.conn is not None
        await self.conn.execute("TRUNCATE procrastinate_events, procrastinate_periodic_defers, "
                                "procrastinate_jobs, procrastinate_workers CASCADE")

    async def enqueue_many(self, payloads: list[dict[str, Any]]) -> None:
        await self.task.batch_defer_async(*payloads)

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.task.defer_async(**payload)

    async def unfinished(self) -> int:
        return int(await self.sql("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"))

    async def seed_finished(self, count: int) -> None:
        assert self.conn is not None
        await self.conn.execute(f"""
            INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
            SELECT 'default', '{KIND}', jsonb_build_object('i', i), 'succeeded', 1
            FROM generate_series(1, {int(count)}) AS i""")

    async def serve(self, concurrency: int, on_job: OnJob, stop: asyncio.Event) -> None:
        app = self._app(on_job)
        async with app.open_async():
            worker = asyncio.create_task(app.run_worker_async(
                concurrency=concurrency, install_signal_handlers=False, listen_notify=True,
                fetch_job_polling_interval=float(self.options.get("polling_interval", 1.0))))
            await asyncio.wait([worker, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def describe(self, concurrency: int) -> str:
        return f"App+PsycopgConnector, run_worker_async(concurrency={concurrency})"


ADAPTERS: dict[str, type[Adapter]] = {
    "jobengine": JobengineAdapter,
    "pgqueuer": PgqueuerAdapter,
    "procrastinate": ProcrastinateAdapter,
}
