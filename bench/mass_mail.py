"""Mass mail, end to end: the seed's "mail every player". ``--mails`` ``mail`` jobs of the
game-update template (config/templates), one per player, enqueued in ONE call with
``enqueue_many(..., return_ids=True)``; then a worker (its own process, concurrency 32)
delivers them over SMTP to a real aiosmtpd server (another process) that accepts at most
``--smtp-rate`` messages/s. Reported: the enqueue time, the delivery rate (first to last
accepted message), the worker's RSS sampled every 2 s, that every player got exactly one
mail (the server counts recipients), the SMTP sessions the server saw, and the CPU time per
mail of the worker and of the server (steadier than the rate on a busy machine).

    .venv/bin/python -m bench.mass_mail                       # 100,000 mails
    .venv/bin/python -m bench.mass_mail --mails 10000 --smtp-rate 2000

Results are printed and written to bench/results/mass-mail-<time>.json. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.bulk_enqueue import mail_args
from bench.server import ROOT, BenchServer

SENDER = "noreply@game.example.com"


def _settings(url: str, smtp_port: int, concurrency: int | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"database_url": url, "schema": "jobengine", "dashboard": {"enabled": False},
                                "logging": {"level": "warning"}, "base_dir": str(ROOT / "config"),
                                "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": SENDER}}
    if concurrency:
        settings["queues"] = {"default": {"concurrency": concurrency}}
    return settings


# --- the SMTP server process ----------------------------------------------------------------


async def _smtp_sink(port: int, rate: float) -> None:
    """aiosmtpd on ``port`` accepting at most ``rate`` messages/s; on stdin ``count`` it
    prints the recipients seen so far, and when the first and last message came."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    seen: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    next_slot = [0.0]

    class Sink:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            now = time.monotonic()
            slot = max(now, next_slot[0])
            next_slot[0] = slot + 1 / rate
            if slot > now:
                await asyncio.sleep(slot - now)  # the server's pace: at most `rate` messages/s
            seen.update(envelope.rcpt_tos)
            times.append(time.time())
            return "250 OK"

    sessions = [0]

    def session() -> SMTP:
        sessions[0] += 1
        return SMTP(Sink(), hostname="sink")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(session, "127.0.0.1", port)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            print(json.dumps({"messages": len(times), "recipients": len(seen), "sessions": sessions[0],
                              "repeated": sum(1 for n in seen.values() if n > 1),
                              "first": times[0] if times else None, "last": times[-1] if times else None}),
                  flush=True)
    server.close()


# --- the worker process -----------------------------------------------------------------------


async def _worker(url: str, smtp_port: int, concurrency: int, ready_file: str) -> None:
    from engine.core.config import build_config
    from engine.core.logs import configure_logging
    from engine.engine import Engine

    config = build_config(_settings(url, smtp_port, concurrency))
    configure_logging(config.logging)  # as `jobengine start` does: lines below warning are not written
    async with Engine(config=config):
        await asyncio.to_thread(Path(ready_file).write_text, "ready")  # stdout carries the logs
        await asyncio.Event().wait()


# --- the run ----------------------------------------------------------------------------------


async def _spawn(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """The SMTP server process and the words after its "ready" line (its port)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.mass_mail", *args,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    ready = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
    if ready[:1] != ["ready"]:
        proc.kill()
        raise RuntimeError(f"bench.mass_mail {args[0]} did not start")
    return proc, ready[1:]


async def _count(sink: asyncio.subprocess.Process) -> dict[str, Any]:
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write(b"count\n")
    await sink.stdin.drain()
    result: dict[str, Any] = json.loads(await asyncio.wait_for(sink.stdout.readline(), 30))
    return result


async def run(args: argparse.Namespace, server: BenchServer) -> dict[str, Any]:
    from engine.core.config import build_config
    from engine.core.job import JobSpec
    from engine.engine import Engine

    url = server.create_database("bench_mass_mail")
    sink, (port,) = await _spawn("smtp-sink", str(args.smtp_port), str(args.smtp_rate))
    worker = None
    try:
        async with Engine(config=build_config(_settings(url, int(port), None))) as client:
            specs = [JobSpec(kind="mail", args=mail_args(i)) for i in range(args.mails)]
            start = time.perf_counter()
            ids = await client.enqueue_many(specs, return_ids=True)
            enqueue = time.perf_counter() - start
            print(f"enqueued {len(ids):,} mail jobs in one call: {enqueue:.2f} s", file=sys.stderr)
            ready_file = ROOT / ".jobengine" / f"mass-mail-worker-{os.getpid()}.ready"
            ready_file.unlink(missing_ok=True)
            with (ROOT / "bench" / "results" / "mass-mail-worker.log").open("wb") as log:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.mass_mail", "worker", url, port, str(args.concurrency),
                    str(ready_file), stdout=log, stderr=log)
            started = time.monotonic()
            while not ready_file.exists():
                if time.monotonic() > started + 60 or worker.returncode is not None:
                    raise RuntimeError("the mass-mail worker did not start: see bench/results/mass-mail-worker.log")
                await asyncio.sleep(0.1)
            ready_file.unlink()
            process, sink_process = psutil.Process(worker.pid), psutil.Process(sink.pid)
            cpu_before = (_cpu(process), _cpu(sink_process))
            rss: list[dict[str, float]] = []
            started, deadline = time.monotonic(), time.monotonic() + args.timeout
            counted = await _count(sink)
            while counted["messages"] < args.mails and time.monotonic() < deadline:
                rss.append({"s": round(time.monotonic() - started, 1), "messages": counted["messages"],
                            "rss_mb": process.memory_info().rss / 2**20})
                await asyncio.sleep(2)
                counted = await _count(sink)
                print(f"delivered {counted['messages']:,}", file=sys.stderr, flush=True)
            cpu = (_cpu(process) - cpu_before[0], _cpu(sink_process) - cpu_before[1])
            assert client.store is not None
            async with client.store.pool.acquire() as conn:
                states = dict(await conn.fetch("SELECT state, count(*) FROM jobengine.jobs GROUP BY state"))
    finally:
        for proc in (worker, sink):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    span = (counted["last"] - counted["first"]) if counted["messages"] > 1 else None
    return {"mails": args.mails, "enqueue_seconds": enqueue, "enqueue_rate": args.mails / enqueue,
            "delivered": counted["messages"], "distinct_recipients": counted["recipients"],
            "players_with_more_than_one_mail": counted["repeated"], "job_states": states,
            "delivery_rate": (counted["messages"] - 1) / span if span else None, "smtp_rate_cap": args.smtp_rate,
            "concurrency": args.concurrency, "smtp_sessions": counted["sessions"],
            "worker_cpu_ms_per_mail": 1000 * cpu[0] / max(counted["messages"], 1),
            "smtp_server_cpu_ms_per_mail": 1000 * cpu[1] / max(counted["messages"], 1), "rss": rss}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mass_mail", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mails", type=int, default=100_000)
    p.add_argument("--smtp-rate", type=float, default=2_000.0, help="messages/s the SMTP server accepts at most")
    p.add_argument("--smtp-port", type=int, default=0, help="0: any free port")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--timeout", type=float, default=900.0, help="give up delivering after this many seconds")
    p.add_argument("--url", help="use this Postgres instead of a dedicated one")
    p.add_argument("--out")
    args = p.parse_args()
    import uvloop

    load_start = os.getloadavg()[0]
    with BenchServer.external(args.url) if args.url else BenchServer.start() as server:
        result = uvloop.run(run(args, server))
    result["machine"] = f"{os.cpu_count()} cores; load average {load_start:.2f} at start, " \
                        f"{os.getloadavg()[0]:.2f} at end"
    result["server"] = server.description
    rss = [s["rss_mb"] for s in result["rss"]]
    print(f"{result['mails']:,} mails: enqueue {result['enqueue_seconds']:.2f} s ({result['enqueue_rate']:,.0f}/s); "
          f"delivered {result['delivered']:,} to {result['distinct_recipients']:,} players "
          f"({result['players_with_more_than_one_mail']} with more than one), "
          f"{result['delivery_rate'] or 0:,.0f} mails/s (cap {args.smtp_rate:,.0f}) over "
          f"{result['smtp_sessions']:,} SMTP sessions; CPU per mail: worker {result['worker_cpu_ms_per_mail']:.2f} ms, "
          f"SMTP server {result['smtp_server_cpu_ms_per_mail']:.2f} ms; "
          f"worker RSS {min(rss, default=0):.1f}-{max(rss, default=0):.1f} MB; jobs {result['job_states']}; "
          f"{result['machine']}")
    name = f"mass-mail-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__" and sys.argv[1:2] == ["smtp-sink"]:
    import uvloop

    uvloop.run(_smtp_sink(int(sys.argv[2]), float(sys.argv[3])))
elif __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    import uvloop

    uvloop.run(_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
elif __name__ == "__main__":
    main()
