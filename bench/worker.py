"""The worker subprocess: one engine's worker, alone in its process so its CPU time and
peak RSS are its own.

Run by bench/run.py as ``python -m bench.worker ENGINE URL CONCURRENCY OPTIONS_JSON LOOP``.
It speaks JSON lines: commands on stdin, events on the original stdout (everything
else the libraries print goes to stderr).

Commands: ``{"cmd": "start", "expect": N}`` starts the engine's worker (with ``expect``,
it reports ``drained`` once N jobs ran and Postgres shows none unfinished);
``{"cmd": "stats"}``; ``{"cmd": "stop"}``.
Events: ``ready``, ``started`` (per job whose payload carries a send time ``t``, with the
enqueue->start latency), ``drained``, ``stats``, ``stopped``.

Example::

    python -m bench.worker jobengine postgresql://... 32 '{}' uvloop
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time
from typing import Any, TextIO

from bench.engines import ADAPTERS, Adapter


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Worker:
    """Counts jobs as the engine runs them and answers the parent's commands."""

    def __init__(self, adapter: Adapter, concurrency: int, out: TextIO) -> None:
        self.adapter = adapter
        self.concurrency = concurrency
        self.out = out
        self.count = 0
        self.expect: int | None = None
        self.first: tuple[float, float] | None = None
        self.reached = asyncio.Event()
        self.stop = asyncio.Event()
        self.serving: asyncio.Task[None] | None = None

    def emit(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def on_job(self, payload: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = (now, cpu_seconds())
        self.count += 1
        sent = payload.get("t")
        if sent is not None:
            self.emit(event="started", lat=now - sent, i=payload.get("i"))
        if self.count == self.expect:
            self.reached.set()

    async def watch_drain(self) -> None:
        """Once ``expect`` jobs ran, wait until Postgres records them all as finished."""
        await self.reached.wait()
        while await self.adapter.unfinished() > 0:  # noqa: ASYNC110 - the state lives in Postgres
            await asyncio.sleep(0.002)
        done, cpu = time.perf_counter(), cpu_seconds()
        assert self.first is not None
        self.emit(event="drained", elapsed=done - self.first[0], cpu=cpu - self.first[1], count=self.count,
                  rss=rss_mb(), max_rss=max_rss_mb())

    def stats(self) -> None:
        self.emit(event="stats", count=self.count, cpu=cpu_seconds(), t=time.perf_counter(), rss=rss_mb(),
                  max_rss=max_rss_mb())

    async def command(self, message: dict[str, Any]) -> bool:
        cmd = message["cmd"]
        if cmd == "start":
            self.expect = message.get("expect")
            self.serving = asyncio.create_task(self.adapter.serve(self.concurrency, self.on_job, self.stop))
            if self.expect:
                asyncio.create_task(self.watch_drain())  # noqa: RUF006 - lives as long as the process
        elif cmd == "stats":
            self.stats()
        elif cmd == "stop":
            self.stop.set()
            if self.serving is not None:
                await asyncio.wait_for(self.serving, timeout=60)
            self.emit(event="stopped", count=self.count, max_rss=max_rss_mb())
            return False
        return True


async def main(engine: str, url: str, concurrency: int, options: dict[str, Any], out: TextIO) -> None:
    adapter = ADAPTERS[engine](url, options)
    await Adapter.open(adapter)  # only the plain connection the drain check counts with
    worker = Worker(adapter, concurrency, out)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker.emit(event="ready", rss=rss_mb(), description=adapter.describe(concurrency))
    while line := await reader.readline():
        if not await worker.command(json.loads(line)):
            break
    await Adapter.close(adapter)


def run() -> None:
    engine, url, concurrency, options, loop = sys.argv[1:6]
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library output must not corrupt the protocol
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    coro = main(engine, url, int(concurrency), json.loads(options), out)
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    run()
