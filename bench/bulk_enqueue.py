"""Bulk enqueue alone, the engines interleaved round by round on one dedicated Postgres:
jobs/s, and the client's and Postgres's CPU per job.

Two shapes:

- ``noop``: the drain workload's enqueue: ``--jobs`` no-op jobs in calls of ``--batch``.
- ``mail``: the seed's "mail every player": ``--mail-jobs`` ``mail`` jobs (a template, one
  address and name per player) in ONE call. jobengine validates every one against the mail
  handler's args model (addresses, header text, template name); pgqueuer stores bytes.

Variants: ``jobengine`` (``enqueue_many(..., return_ids=True)``), ``jobengine-jobs`` (the
Job-returning ``enqueue_many``, round 1's path), ``pgqueuer`` (``Queries.enqueue`` with lists).

    .venv/bin/python -m bench.bulk_enqueue                         # both shapes, 5 rounds (~2 min)
    .venv/bin/python -m bench.bulk_enqueue --shapes mail --rounds 3

Results are printed and written to bench/results/bulk-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.engines import ADAPTERS, KIND, JobengineAdapter, PgqueuerAdapter
from bench.server import ROOT, BenchServer

Enqueue = Callable[[list[dict[str, Any]]], Awaitable[None]]
VARIANTS = ("jobengine", "jobengine-jobs", "pgqueuer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bulk_enqueue", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="noop,mail")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--mail-jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--url", help="use this Postgres instead of starting a dedicated one")
    p.add_argument("--out")
    return p.parse_args(argv)


def mail_args(player: int) -> dict[str, Any]:
    """One player's mail of the seed's game-update template (docs/job-documents.md)."""
    return {"to": f"player{player}@players.example.com", "subject": "게임 업데이트 알림", "template": "game-update",
            "data": {"playerName": f"player-{player}", "updateVersion": "1.2.0", "newFeatures": ["새로운 던전"]}}


def _jobengine(adapter: JobengineAdapter, kind: str, return_ids: bool) -> Enqueue:
    from engine.core.job import JobSpec

    async def enqueue(payloads: list[dict[str, Any]]) -> None:
        specs = [JobSpec(kind=kind, args=p) for p in payloads]
        if return_ids:
            ids = await adapter.client.enqueue_many(specs, return_ids=True)
        else:
            ids = [job.id for job in await adapter.client.enqueue_many(specs)]
        assert len(ids) == len(payloads)

    return enqueue


def _pgqueuer(adapter: PgqueuerAdapter, kind: str) -> Enqueue:
    async def enqueue(payloads: list[dict[str, Any]]) -> None:
        n = len(payloads)
        ids = await adapter.queries.enqueue([kind] * n, [json.dumps(p).encode() for p in payloads], [0] * n)
        assert len(ids) == n

    return enqueue


async def measure(server: BenchServer, adapter: Any, enqueue: Enqueue, payloads: list[dict[str, Any]],
                  batch: int, table: str) -> dict[str, float]:
    await adapter.clear()
    await adapter.sql("CHECKPOINT")
    cpu = server.cpu()
    cpu.mark()
    client_cpu, start = time.process_time(), time.perf_counter()
    for offset in range(0, len(payloads), batch):
        await enqueue(payloads[offset:offset + batch])
    elapsed = time.perf_counter() - start
    client, pg = time.process_time() - client_cpu, cpu.seconds()
    stored = await adapter.sql(f"SELECT count(*) FROM {table}")
    if stored != len(payloads):
        raise RuntimeError(f"{adapter.name}: {stored} rows after enqueueing {len(payloads)}")
    n = len(payloads)
    return {"rate": n / elapsed, "elapsed": elapsed, "client_us": client / n * 1e6, "pg_us": pg / n * 1e6}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = BenchServer.external(args.url) if args.url else BenchServer.start()
    load_start = os.getloadavg()
    results: dict[str, Any] = {"server": server.description, "args": vars(args), "shapes": {}}
    with server:
        je = ADAPTERS["jobengine"](server.create_database("bulk_jobengine"))
        pq = ADAPTERS["pgqueuer"](server.create_database("bulk_pgqueuer"))
        for adapter in (je, pq):
            await adapter.open()
            await adapter.install()
        assert isinstance(je, JobengineAdapter) and isinstance(pq, PgqueuerAdapter)
        shapes = {"noop": (KIND, [{"i": i} for i in range(args.jobs)], args.batch),
                  "mail": ("mail", [mail_args(i) for i in range(args.mail_jobs)], args.mail_jobs)}
        try:
            for shape in args.shapes.split(","):
                kind, payloads, batch = shapes[shape]
                variants: dict[str, tuple[Any, Enqueue, str]] = {
                    "jobengine": (je, _jobengine(je, kind, True), "jobengine.jobs"),
                    "jobengine-jobs": (je, _jobengine(je, kind, False), "jobengine.jobs"),
                    "pgqueuer": (pq, _pgqueuer(pq, kind), "pgqueuer"),
                }
                chosen = args.variants.split(",")
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
                for round_ in range(args.rounds):
                    for name in chosen:
                        adapter, enqueue, table = variants[name]
                        runs[name].append(await measure(server, adapter, enqueue, payloads, batch, table))
                        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {shape} round "
                              f"{round_ + 1} {name}: {runs[name][-1]['rate']:,.0f} jobs/s", file=sys.stderr)
                results["shapes"][shape] = {
                    "jobs": len(payloads), "batch": batch,
                    "variants": {name: {**{key: statistics.median(r[key] for r in rs) for key in rs[0]},
                                        "runs": [r["rate"] for r in rs]} for name, rs in runs.items()}}
        finally:
            for adapter in (je, pq):
                await adapter.close()
    load_end = os.getloadavg()
    results["machine"] = (f"{os.cpu_count()} cores; load average {load_start[0]:.2f} at start, "
                          f"{load_end[0]:.2f} at end")
    return results


def render(results: dict[str, Any]) -> str:
    lines = [f"Postgres: {results['server']}", f"Machine: {results['machine']}"]
    for shape, data in results["shapes"].items():
        lines += ["", f"{shape}: {data['jobs']:,} jobs in calls of {data['batch']:,} "
                      f"(medians of {len(next(iter(data['variants'].values()))['runs'])} rounds)"]
        reference = data["variants"].get("pgqueuer", {}).get("rate")
        for name, v in data["variants"].items():
            ratio = f"  {v['rate'] / reference:.2f}x pgqueuer" if reference else ""
            lines.append(f"  {name:15} {v['rate']:>9,.0f} jobs/s  ({v['elapsed']:.2f} s)  client {v['client_us']:5.1f} "
                         f"us/job  Postgres {v['pg_us']:5.1f} us/job{ratio}")
    return "\n".join(lines)


def run() -> None:
    import uvloop

    args = parse_args()
    results = uvloop.run(main(args))
    print(render(results))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else out_dir / f"bulk-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    run()
