"""The measured workloads. Each takes an open client adapter (parent process) and runs
the engine's worker in its own subprocess (:class:`WorkerProcess`).

Example::

    result = await drain(ctx, adapter)      # {"rate": ..., "cpu_per_1k": ..., ...}
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.engines import Adapter
from bench.server import ROOT, BenchServer

TABLES = {"jobengine": "jobengine.jobs", "pgqueuer": "pgqueuer", "procrastinate": "procrastinate_jobs"}


@dataclass
class Context:
    """Settings shared by every workload of a run."""

    server: BenchServer
    jobs: int = 20_000
    concurrency: int = 32
    enqueue_batch: int = 1_000
    latency_jobs: int = 300
    steady_seconds: float = 15.0
    steady_batch: int = 100
    curve_rates: tuple[int, ...] = (1_000, 2_500, 5_000, 10_000, 20_000)
    curve_seconds: float = 5.0
    loop: str = "uvloop"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_dir: Path = ROOT / "bench" / "results"


class WorkerProcess:
    """One engine worker in a subprocess, driven through bench/worker.py's protocol."""

    def __init__(self, ctx: Context, adapter: Adapter) -> None:
        self.ctx = ctx
        self.adapter = adapter
        self.proc: asyncio.subprocess.Process | None = None
        self.description = ""

    async def __aenter__(self) -> WorkerProcess:
        self.ctx.log_dir.mkdir(parents=True, exist_ok=True)
        # A local log file, opened once per worker: blocking for microseconds is fine here.
        log = open(self.ctx.log_dir / f"worker-{self.adapter.name}.log", "a")  # noqa: SIM115, ASYNC230
        options = json.dumps(self.ctx.options.get(self.adapter.name, {}))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker", self.adapter.name, self.adapter.url, str(self.ctx.concurrency),
            options, self.ctx.loop, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log, limit=2**20)
        log.close()
        ready = await self.wait_for("ready", 60)
        self.description = ready["description"]
        # BENCH_PROFILE="py-spy record -r 500 -f speedscope -o /tmp/w.json" attaches a profiler.
        profiler = shlex.split(os.environ.get("BENCH_PROFILE", ""))
        if profiler:
            await asyncio.create_subprocess_exec(*profiler, "-p", str(self.proc.pid), stdout=sys.stderr.fileno())
            await asyncio.sleep(1)  # let it attach
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            try:
                await self.send({"cmd": "stop"})
                await self.wait_for("stopped", 60)
            except (TimeoutError, ConnectionError, RuntimeError):
                self.proc.kill()
        await self.proc.wait()

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.adapter.name} worker exited; see bench/results/worker-*.log")
                message = json.loads(line)
                if message["event"] == event:
                    return message

    async def stats(self) -> dict[str, Any]:
        await self.send({"cmd": "stats"})
        return await self.wait_for("stats", 30)


async def prepare(ctx: Context, adapter: Adapter) -> None:
    """Empty the engine's tables and checkpoint, so every workload starts alike."""
    await adapter.clear()
    await adapter.sql("CHECKPOINT")


async def bulk_enqueue(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    """Enqueue ``ctx.jobs`` jobs in batches of ``ctx.enqueue_batch``; jobs/s."""
    payloads = [{"i": i} for i in range(ctx.jobs)]
    start = time.perf_counter()
    for offset in range(0, ctx.jobs, ctx.enqueue_batch):
        await adapter.enqueue_many(payloads[offset:offset + ctx.enqueue_batch])
    elapsed = time.perf_counter() - start
    return {"rate": ctx.jobs / elapsed, "elapsed": elapsed}


async def seed(ctx: Context, adapter: Adapter, finished: int) -> None:
    """Empty the tables, then put ``finished`` finished jobs there, vacuumed and analysed as
    autovacuum would have left them."""
    await adapter.clear()
    await adapter.seed_finished(finished)
    await adapter.sql(f"VACUUM ANALYZE {TABLES[adapter.name]}")


async def drain(ctx: Context, adapter: Adapter, clear: bool = True) -> dict[str, Any]:
    """Bulk-enqueue, then drain with the worker: from the first job's start until Postgres
    shows every job finished. ``clear=False`` keeps the rows already there (finished ones)."""
    if clear:
        await adapter.clear()
    else:  # the previous run's dead rows gone, as autovacuum leaves a table between bursts
        await adapter.sql(f"VACUUM {TABLES[adapter.name]}")
    await adapter.sql("CHECKPOINT")
    enqueue = await bulk_enqueue(ctx, adapter)
    async with WorkerProcess(ctx, adapter) as worker:
        cpu = ctx.server.cpu()
        cpu.mark()
        await worker.send({"cmd": "start", "expect": ctx.jobs})
        done = await worker.wait_for("drained", max(120.0, ctx.jobs / 50))
        pg_cpu = cpu.seconds()
    if done["count"] != ctx.jobs or await adapter.unfinished():
        raise RuntimeError(f"{adapter.name}: ran {done['count']} of {ctx.jobs} jobs")
    return {"enqueue_rate": enqueue["rate"], "rate": ctx.jobs / done["elapsed"], "elapsed": done["elapsed"],
            "cpu_per_1k": done["cpu"] / ctx.jobs * 1000, "pg_cpu_per_1k": pg_cpu / ctx.jobs * 1000,
            "max_rss": done["max_rss"], "worker": worker.description}


async def latency(ctx: Context, adapter: Adapter, warmup: int = 20) -> dict[str, Any]:
    """Send jobs one at a time to an idle worker; enqueue->start latency percentiles (ms),
    measured from just before the enqueue call to the handler's first line."""
    await prepare(ctx, adapter)
    samples: list[float] = []
    async with WorkerProcess(ctx, adapter) as worker:
        await worker.send({"cmd": "start"})
        for i in range(warmup + ctx.latency_jobs):
            await asyncio.sleep(0.01)  # the previous job's ack lands: the worker is idle
            sent = time.perf_counter()
            await adapter.enqueue_one({"t": sent, "i": i})
            started = await worker.wait_for("started", 30)
            if i >= warmup:
                samples.append(started["lat"] * 1000)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(samples), "n": len(samples)}


async def produce(adapter: Adapter, stop: asyncio.Event, batch: int, rate: float | None, counter: list[int],
                  total: int | None = None) -> None:
    """Enqueue batches until ``stop`` (or ``total`` jobs): as fast as possible, or paced at
    ``rate`` jobs/s. ``counter[0]`` counts the jobs enqueued."""
    start = time.perf_counter()
    while not stop.is_set() and (total is None or counter[0] < total):
        if rate is not None:
            delay = start + counter[0] / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        size = batch if total is None else min(batch, total - counter[0])
        await adapter.enqueue_many([{"i": counter[0] + k} for k in range(size)])
        counter[0] += size


async def produce_and_consume(ctx: Context, adapter: Adapter, seconds: float, rate: float | None = None,
                              warmup: float = 1.0) -> dict[str, Any]:
    """A producer (this process) and the worker run together; the completed rate is
    counted by the worker over ``seconds`` after ``warmup``."""
    await prepare(ctx, adapter)
    batch = ctx.steady_batch if rate is None else max(1, min(ctx.steady_batch, int(rate / 100)))
    stop, counter = asyncio.Event(), [0]
    async with WorkerProcess(ctx, adapter) as worker:
        await worker.send({"cmd": "start"})
        producer = asyncio.create_task(produce(adapter, stop, batch, rate, counter))
        await asyncio.sleep(warmup)
        cpu = ctx.server.cpu()
        cpu.mark()
        first, offered0 = await worker.stats(), counter[0]
        await asyncio.sleep(seconds)
        last, offered1 = await worker.stats(), counter[0]
        pg_cpu = cpu.seconds()
        stop.set()
        await producer
    elapsed = last["t"] - first["t"]
    done = last["count"] - first["count"]
    return {"rate": done / elapsed, "offered": (offered1 - offered0) / elapsed,
            "backlog": counter[0] - last["count"], "cpu_per_1k": (last["cpu"] - first["cpu"]) / max(done, 1) * 1000,
            "pg_cpu_per_1k": pg_cpu / max(done, 1) * 1000, "max_rss": last["max_rss"]}


async def steady(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    """``ctx.steady_seconds`` of an unbounded producer and the worker together."""
    return await produce_and_consume(ctx, adapter, ctx.steady_seconds)


async def curve(ctx: Context, adapter: Adapter) -> list[dict[str, Any]]:
    """Offered vs completed: paced producers at each of ``ctx.curve_rates``."""
    points = []
    for rate in ctx.curve_rates:
        point = await produce_and_consume(ctx, adapter, ctx.curve_seconds, rate=rate)
        points.append({"target": rate, **point})
    return points
