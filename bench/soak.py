"""Memory soak: one engine's worker runs 1,000,000 jobs fed at a steady rate (about 10
minutes at the default 1,700 jobs/s); its RSS is sampled every 100,000 jobs. A flat line
means nothing is retained per job; the report gives the growth per 100k jobs over the
second half (after caches, pools and the allocator have settled).

    .venv/bin/python -m bench.soak                          # jobengine, 1M jobs, ~10 min
    .venv/bin/python -m bench.soak --jobs 200000 --rate 5000
    .venv/bin/python -m bench.soak --engine pgqueuer

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench import workloads
from bench.engines import ADAPTERS
from bench.server import ROOT, BenchServer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="jobengine", choices=sorted(ADAPTERS))
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=1_700.0, help="offered jobs/s")
    p.add_argument("--every", type=int, default=100_000, help="sample RSS every N completed jobs")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--url", help="use this Postgres instead of a dedicated one")
    return p.parse_args()


def slope_per(samples: list[dict[str, Any]], every: int) -> float:
    """Least-squares RSS growth (MB) per ``every`` jobs over the second half of the samples."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return 0.0
    xs = [s["jobs"] for s in half]
    ys = [s["rss"] for s in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * every if var else 0.0


async def soak(args: argparse.Namespace, server: BenchServer) -> dict[str, Any]:
    url = server.create_database(f"soak_{args.engine}")
    adapter = ADAPTERS[args.engine](url)
    await adapter.open()
    await adapter.install()
    ctx = workloads.Context(server=server, concurrency=args.concurrency)
    samples: list[dict[str, Any]] = []
    stop, counter = asyncio.Event(), [0]
    started = time.monotonic()
    try:
        async with workloads.WorkerProcess(ctx, adapter) as worker:
            await worker.send({"cmd": "start"})
            producer = asyncio.create_task(workloads.produce(adapter, stop, 100, args.rate, counter, args.jobs))
            samples.append({"jobs": 0, **_pick(await worker.stats()), "t": 0.0})
            next_mark = args.every
            while next_mark <= args.jobs:
                stats = await worker.stats()
                if stats["count"] >= next_mark:
                    samples.append({"jobs": stats["count"], **_pick(stats), "t": time.monotonic() - started})
                    print(f"{stats['count']:>9,} jobs  rss {stats['rss']:6.1f} MB  "
                          f"(peak {stats['max_rss']:.1f})  {time.monotonic() - started:5.0f} s", flush=True)
                    next_mark += args.every
                await asyncio.sleep(0.5)
            stop.set()
            await producer
    finally:
        await adapter.close()
    growth = slope_per(samples, args.every)
    return {"engine": args.engine, "jobs": args.jobs, "rate": args.rate, "seconds": time.monotonic() - started,
            "samples": samples, "growth_per_100k_mb": growth * 100_000 / args.every, "server": server.description}


def _pick(stats: dict[str, Any]) -> dict[str, float]:
    return {"rss": stats["rss"], "max_rss": stats["max_rss"], "cpu": stats["cpu"]}


def run() -> None:
    args = parse_args()
    import uvloop

    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    with server:
        result = uvloop.run(soak(args, server))
    first, last = result["samples"][1], result["samples"][-1]
    print(f"\n{result['engine']}: {result['jobs']:,} jobs in {result['seconds']:.0f} s; RSS {first['rss']:.1f} MB "
          f"after {first['jobs']:,} jobs, {last['rss']:.1f} MB after {last['jobs']:,}; growth over the second half: "
          f"{result['growth_per_100k_mb']:+.2f} MB per 100k jobs")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{result['engine']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    run()
