"""One command for the whole comparison: jobengine, pgqueuer and procrastinate on the same
Postgres, every workload, then a table with ratios and the targets.

    .venv/bin/python -m bench.run                    # everything (about 10 minutes)
    .venv/bin/python -m bench.run --quick            # smaller numbers, a smoke run
    .venv/bin/python -m bench.run --engines jobengine --workloads drain,latency

Results are printed and written to bench/results/<time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import workloads
from bench.engines import ADAPTERS, Adapter
from bench.limit import latency_floor, run_limit, sql_floor
from bench.report import render
from bench.server import ROOT, BenchServer, wait_quiet

ALL_WORKLOADS = ("drain", "latency", "steady", "curve", "aged", "limit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", default="jobengine,pgqueuer,procrastinate")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    p.add_argument("--aged-engines", default="jobengine",
                   help="engines that also run the drain with --finished-rows finished rows (default jobengine)")
    p.add_argument("--url", help="use this Postgres instead of starting a dedicated one (say which in reports)")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--enqueue-batch", type=int, default=1_000)
    p.add_argument("--latency-jobs", type=int, default=300)
    p.add_argument("--steady-seconds", type=float, default=15.0)
    p.add_argument("--curve-seconds", type=float, default=5.0)
    p.add_argument("--curve-rates", default="1000,2500,5000,10000,20000")
    p.add_argument("--finished-rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=1,
                   help="run each workload N times (engines interleaved) and keep the median")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--option", action="append", default=[], metavar="ENGINE.KEY=JSON",
                   help="engine option, e.g. pgqueuer.batch_size=10 or jobengine.pool_size=4")
    p.add_argument("--setup-sql", action="append", default=[], metavar="ENGINE=SQL",
                   help="experiments: SQL run on the engine's database after its schema is installed")
    p.add_argument("--max-load", type=float, default=None,
                   help="wait (up to 10 min) until the 1-minute load average is below this before starting")
    p.add_argument("--out", help="write the JSON results here (default bench/results/<time>.json)")
    p.add_argument("--quiet", action="store_true", help="print no table (with --out)")
    p.add_argument("--quick", action="store_true", help="2,000 jobs, 50 latency samples, 5 s steady, no aged/curve")
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.latency_jobs, args.steady_seconds = 2_000, 50, 5.0
        args.workloads = ",".join(w for w in args.workloads.split(",") if w not in ("aged", "curve"))
        args.finished_rows = 100_000
    return args


def engine_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        engine, _, name = key.partition(".")
        options.setdefault(engine, {})[name] = json.loads(value)
    return options


def median(results: list[dict[str, Any]], key: str, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run with the median ``key``; every run's ``key`` is kept under ``runs``. Each key
    in ``also`` is its own median (every run's under ``<key>_runs``), not the chosen run's:
    the drain's bulk enqueue is a separate figure from the drain rate."""
    ordered = sorted(results, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    if len(results) > 1:
        chosen["runs"] = [r[key] for r in results]
        for other in also:
            chosen[other] = statistics.median(r[other] for r in results)
            chosen[f"{other}_runs"] = [r[other] for r in results]
    return chosen


async def open_adapter(ctx: workloads.Context, name: str, database: str, args: argparse.Namespace) -> Adapter:
    adapter = ADAPTERS[name](ctx.server.create_database(database), ctx.options.get(name, {}))
    await adapter.open()
    await adapter.install()
    for item in args.setup_sql:
        engine, _, statement = item.partition("=")
        if engine == name and adapter.conn is not None:
            await adapter.conn.execute(statement)
    return adapter


class Runner:
    """Runs each workload for every engine in turn, repeat by repeat (engines interleaved,
    so a burst of load from elsewhere hits them alike), and keeps the median run."""

    def __init__(self, ctx: workloads.Context, args: argparse.Namespace, log: Callable[[str], None]) -> None:
        self.ctx, self.args, self.log = ctx, args, log
        self.names = args.engines.split(",")
        self.adapters: dict[str, Adapter] = {}
        self.aged: dict[str, Adapter] = {}
        self.out: dict[str, dict[str, Any]] = {name: {} for name in self.names}

    async def __aenter__(self) -> Runner:
        for name in self.names:
            self.adapters[name] = await open_adapter(self.ctx, name, f"bench_{name}", self.args)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for adapter in [*self.adapters.values(), *self.aged.values()]:
            await adapter.close()

    async def repeated(self, key: str, names: list[str], run: Callable[[str], Awaitable[dict[str, Any]]],
                       median_key: str, also: tuple[str, ...] = ()) -> None:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(self.args.repeat):
            for name in names:
                started = time.monotonic()
                runs[name].append(await run(name))
                self.log(f"{name}: {key} {time.monotonic() - started:.0f} s: {_brief(runs[name][-1])}")
        for name in names:
            self.out[name][key] = median(runs[name], median_key, also)

    async def aged_pair(self, name: str) -> dict[str, Any]:
        """A drain on the table holding the finished rows, then one on the empty table, back to
        back: the pair's ratio is what the target compares."""
        aged = await workloads.drain(self.ctx, self.aged[name], clear=False)
        empty = await workloads.drain(self.ctx, self.adapters[name])
        # CPU per job (worker + Postgres) is the steadier reading of "cost per job does not grow
        # with the table": a 20,000-job drain lasts about a second, and this VM's speed drifts.
        cost, empty_cost = (r["cpu_per_1k"] + r["pg_cpu_per_1k"] for r in (aged, empty))
        return {**aged, "empty_rate": empty["rate"], "change": aged["rate"] / empty["rate"] - 1,
                "empty_cpu_per_1k": empty["cpu_per_1k"], "empty_pg_cpu_per_1k": empty["pg_cpu_per_1k"],
                "cost_change": cost / empty_cost - 1}

    async def seed(self, names: list[str]) -> None:
        for name in names:
            self.log(f"{name}: seeding {self.args.finished_rows:,} finished jobs ...")
            adapter = self.aged[name] = await open_adapter(self.ctx, name, f"bench_{name}_aged", self.args)
            await workloads.seed(self.ctx, adapter, self.args.finished_rows)

    async def curve(self) -> None:
        for rate in self.ctx.curve_rates:
            for name in self.names:
                point = await workloads.produce_and_consume(self.ctx, self.adapters[name], self.ctx.curve_seconds,
                                                            rate=rate)
                self.out[name].setdefault("curve", []).append({"target": rate, **point})
                self.log(f"{name}: curve {rate}: completed {point['rate']:.0f}/s")

    async def run(self, selected: set[str]) -> dict[str, dict[str, Any]]:
        a = self.adapters
        if "drain" in selected:
            await self.repeated("drain", self.names, lambda n: workloads.drain(self.ctx, a[n]), "rate",
                                also=("enqueue_rate",))
        if "latency" in selected:
            await self.repeated("latency", self.names, lambda n: workloads.latency(self.ctx, a[n]), "p50")
        if "steady" in selected:
            await self.repeated("steady", self.names, lambda n: workloads.steady(self.ctx, a[n]), "rate")
        if "curve" in selected:
            await self.curve()
        aged = [n for n in self.args.aged_engines.split(",") if n in self.names]
        if "aged" in selected and aged:
            await self.seed(aged)
            await self.repeated("aged", aged, self.aged_pair, "change")
        for name, out in self.out.items():
            rss = [r.get("max_rss") for r in out.values() if isinstance(r, dict)]
            rss += [p.get("max_rss") for p in out.get("curve", [])]
            out["peak_rss"] = max((r for r in rss if r), default=None)
            out["worker"] = out.get("drain", {}).get("worker") or ADAPTERS[name]("").describe(self.ctx.concurrency)
        return self.out


def _brief(result: Any) -> str:
    if isinstance(result, list):
        return ", ".join(f"{p['target']}->{p['rate']:.0f}" for p in result)
    return ", ".join(f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, float))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)

    if args.max_load is not None:
        log(f"waiting for load < {args.max_load}: now {wait_quiet(args.max_load, 600):.2f}")
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    selected = set(args.workloads.split(","))
    load_start = os.getloadavg()
    results: dict[str, Any] = {"server": server.description, "engines": {}, "args": vars(args)}
    with server:
        ctx = workloads.Context(server=server, jobs=args.jobs, concurrency=args.concurrency,
                                enqueue_batch=args.enqueue_batch, latency_jobs=args.latency_jobs,
                                steady_seconds=args.steady_seconds, curve_seconds=args.curve_seconds,
                                curve_rates=tuple(int(r) for r in args.curve_rates.split(",")), loop=args.loop,
                                options=engine_options(args.option))
        if "limit" in selected:
            log("pgbench claim+complete limit ...")
            results["limit"] = run_limit(server)
            results["limit"]["sql_floor"] = await sql_floor(server, jobs=args.jobs)
            results["limit"]["latency_floor"] = await latency_floor(server)
            limit = results["limit"]
            log(f"limit: {limit['rate']:,.0f} jobs/s, jobengine's SQL alone {limit['sql_floor']['rate']:,.0f} "
                f"jobs/s, latency floor {limit['latency_floor']}")
        async with Runner(ctx, args, log) as runner:
            results["engines"] = await runner.run(selected)
    load_end = os.getloadavg()
    results["cores"] = os.cpu_count()
    results["machine"] = (f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.loop}; load average "
                          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    return results


def run() -> None:
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        results = uvloop.run(main(args))
    else:
        results = asyncio.run(main(args))
    if not args.quiet:
        print(render(results))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    run()
