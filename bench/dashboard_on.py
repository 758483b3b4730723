"""The dashboard and /metrics on while the engine works (issue 17's "within 10 % of the
figures with them off"). The same jobengine worker runs the drain, the latency and the
steady workloads twice per round, once with the dashboard off and once with it on
(``[dashboard] enabled``, served by the worker's own process) while this process plays:

- ``--browsers`` open overview pages, each as the page's own script behaves
  (engine/web/static/app.js, charts.js): one ``GET /`` at load, an ``/events`` stream held
  open, the live fragment ``/partials/overview`` every ``--refresh`` seconds (the fastest
  refresh the page offers is 1 s) and ``/api/charts?range=1h`` every 30 s;
- one open Jobs page (``/partials/jobs?state=executing``) at the same refresh;
- a Prometheus scraper on ``/metrics`` every ``--scrape`` seconds.

Off and on alternate within a round, so load from elsewhere hits both alike; medians of
``--rounds``. Reported: each figure off and on, the ratio, the HTTP requests served during
the measurement, their p50/max response time and any non-200 answer (which fails the run).

    .venv/bin/python -m bench.dashboard_on --rounds 3 --out bench/results/r2-dashboard-on.json

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import workloads
from bench.engines import JobengineAdapter
from bench.server import ROOT, BenchServer, wait_quiet

WORKLOADS = ("drain", "latency", "steady")
CHARTS_EVERY = 30.0  # charts.js redraws after a live update at most this often


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Traffic:
    """What the open pages and the scraper ask the worker's dashboard, with timings."""

    def __init__(self, base: str, browsers: int, refresh: float, scrape: float) -> None:
        self.base, self.browsers, self.refresh, self.scrape = base, browsers, refresh, scrape
        self.times: list[float] = []
        self.failures: list[str] = []
        self.events = 0
        self.unanswered = 0

    async def get(self, session: aiohttp.ClientSession, path: str) -> None:
        started = time.perf_counter()
        try:
            async with session.get(self.base + path) as response:
                await response.read()
                if response.status != 200:
                    self.failures.append(f"GET {path}: {response.status}")
        except aiohttp.ClientError:  # the worker stops at the workload's end, pages still open
            self.unanswered += 1
            return
        self.times.append(time.perf_counter() - started)

    async def up(self, session: aiohttp.ClientSession, deadline: float = 60.0) -> None:
        """Wait for the worker's dashboard to answer (it starts with the worker's engine)."""
        give_up = time.monotonic() + deadline
        while True:
            try:
                async with session.get(self.base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(f"the worker's dashboard at {self.base} did not answer within {deadline:.0f} s")
            await asyncio.sleep(0.05)

    async def stream(self, session: aiohttp.ClientSession) -> None:
        while True:  # as EventSource does: reconnect after a drop
            try:
                async with session.get(self.base + "/events", timeout=aiohttp.ClientTimeout(total=None)) as answer:
                    async for line in answer.content:
                        if line.startswith(b"event:"):
                            self.events += 1
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(2.0)  # RECONNECT_MS in engine/web/live.py

    async def page(self, session: aiohttp.ClientSession, fragment: str, charts: bool) -> None:
        await self.get(session, "/" if charts else "/jobs?state=executing")
        charted = time.monotonic()
        if charts:
            await self.get(session, "/api/charts?range=1h&queue=&kind=")
        while True:
            await asyncio.sleep(self.refresh)
            await self.get(session, fragment)
            if charts and time.monotonic() - charted > CHARTS_EVERY:
                charted = time.monotonic()
                await self.get(session, "/api/charts?range=1h&queue=&kind=")

    async def scraper(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.get(session, "/metrics")
            await asyncio.sleep(self.scrape)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await self.up(session)
            async with asyncio.TaskGroup() as group:
                for _ in range(self.browsers):
                    group.create_task(self.stream(session))
                    group.create_task(self.page(session, "/partials/overview", charts=True))
                group.create_task(self.page(session, "/partials/jobs?state=executing", charts=False))
                group.create_task(self.scraper(session))

    def summary(self) -> dict[str, Any]:
        times = sorted(self.times)
        return {"requests": len(times), "events": self.events, "failures": self.failures[:5],
                "unanswered": self.unanswered,
                "p50_ms": statistics.median(times) * 1000 if times else None,
                "max_ms": times[-1] * 1000 if times else None}


async def measured(ctx: workloads.Context, adapter: JobengineAdapter, workload: str,
                   traffic: Traffic | None) -> dict[str, Any]:
    run = {"drain": workloads.drain, "latency": workloads.latency, "steady": workloads.steady}[workload]
    if traffic is None:
        return await run(ctx, adapter)
    visiting = asyncio.create_task(traffic.run())
    try:
        result = await run(ctx, adapter)
    finally:
        visiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await visiting
    result["http"] = traffic.summary()
    if not traffic.times:
        raise RuntimeError(f"no dashboard request was answered during {workload}: make it longer (--jobs)")
    if traffic.failures:
        raise RuntimeError(f"the dashboard answered errors during {workload}: {traffic.failures[:5]}")
    return result


KEYS = {"drain": ("rate", "cpu_per_1k", "pg_cpu_per_1k"), "latency": ("p50", "p95", "p99"),
        "steady": ("rate", "cpu_per_1k", "pg_cpu_per_1k")}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)

    if args.max_load is not None:
        log(f"waiting for load < {args.max_load}: now {wait_quiet(args.max_load, 600):.2f}")
    load_start = os.getloadavg()
    port = _free_port()
    dashboard = {"enabled": True, "bind": f"127.0.0.1:{port}", "refresh_interval": args.refresh}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {w: {"off": [], "on": []} for w in WORKLOADS}
    with BenchServer.start() as server:
        url = server.create_database("bench_dashboard_on")
        off_ctx = workloads.Context(server=server, jobs=args.jobs, steady_seconds=args.steady_seconds)
        on_ctx = workloads.Context(server=server, jobs=args.jobs, steady_seconds=args.steady_seconds,
                                   options={"jobengine": {"dashboard": dashboard}})
        adapter = JobengineAdapter(url)
        await adapter.open()
        try:
            for round_ in range(args.rounds):
                for workload in WORKLOADS:
                    for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                        traffic = (Traffic(f"http://127.0.0.1:{port}", args.browsers, args.refresh, args.scrape)
                                   if mode == "on" else None)
                        result = await measured(on_ctx if mode == "on" else off_ctx, adapter, workload, traffic)
                        runs[workload][mode].append(result)
                        brief = ", ".join(f"{k}={result[k]:.4g}" for k in KEYS[workload])
                        http = result.get("http")
                        log(f"round {round_ + 1} {workload} {mode}: {brief}"
                            + (f"; {http['requests']} requests, p50 {http['p50_ms']:.1f} ms" if http else ""))
        finally:
            await adapter.close()
        description = server.description
    summary: dict[str, Any] = {}
    for workload, modes in runs.items():
        summary[workload] = {}
        for key in KEYS[workload]:
            off = statistics.median(r[key] for r in modes["off"])
            on = statistics.median(r[key] for r in modes["on"])
            summary[workload][key] = {"off": off, "on": on, "on_vs_off": on / off - 1,
                                      "off_runs": [r[key] for r in modes["off"]],
                                      "on_runs": [r[key] for r in modes["on"]]}
        summary[workload]["http"] = [r["http"] for r in modes["on"]]
    load_end = os.getloadavg()
    return {"server": description, "args": vars(args), "summary": summary, "runs": runs,
            "machine": f"{os.cpu_count()} cores; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"}


def render(results: dict[str, Any]) -> str:
    lines = [f"{results['server']}; {results['machine']}",
             f"{results['args']['browsers']} overview pages + 1 jobs page at {results['args']['refresh']} s, "
             f"/metrics every {results['args']['scrape']} s; medians of {results['args']['rounds']}",
             "", f"{'figure':<34}{'off':>12}{'on':>12}{'on vs off':>11}"]
    for workload, figures in results["summary"].items():
        for key, value in figures.items():
            if key == "http":
                continue
            lines.append(f"{workload + ' ' + key:<34}{value['off']:>12.4g}{value['on']:>12.4g}"
                         f"{value['on_vs_off'] * 100:>10.1f}%")
        served = figures["http"]
        counts = ", ".join(str(h["requests"]) for h in served)
        p50s = ", ".join(f"{h['p50_ms']:.1f}" for h in served)
        lines.append(f"  ({workload}: {counts} requests served, p50 {p50s} ms)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard_on", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs per drain (long enough for several refreshes)")
    p.add_argument("--steady-seconds", type=float, default=15.0)
    p.add_argument("--browsers", type=int, default=5, help="open overview pages")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between a page's fragment updates")
    p.add_argument("--scrape", type=float, default=5.0, help="seconds between /metrics scrapes")
    p.add_argument("--max-load", type=float, default=None, help="wait until the 1-minute load is below this")
    p.add_argument("--out", help="write the JSON results here (default bench/results/dashboard-on-<time>.json)")
    return p.parse_args(argv)


def run() -> None:
    import uvloop

    args = parse_args()
    results = uvloop.run(main(args))
    print(render(results))
    default = ROOT / "bench" / "results" / f"dashboard-on-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path = Path(args.out) if args.out else default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    run()
