"""The container image, scaled out: ``replicas`` containers of the image share one Postgres,
drain ``jobs`` jobs between them, one is SIGKILLed mid-run; every job must complete, and only
the killed container's running jobs are rescued (each once).

Needs podman (or docker: ``--tool docker``) and an image built from the Dockerfile, e.g.::

    podman build -t localhost/jobengine:dev .
    .venv/bin/python -m bench.container_scale --url postgresql://postgres@127.0.0.1:5432/jobengine_scale

Containers use the host's network (they reach the given Postgres at its address), run
``jobengine start`` with ``JOBENGINE_...`` settings only (README "Configuration from the
environment"), and are removed at the end. The job is the built-in ``log`` kind, so the
image needs no user code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from engine.core.config import Config
from engine.engine import Engine

SETTINGS = {
    "JOBENGINE_QUEUES__DEFAULT__CONCURRENCY": "8",
    "JOBENGINE_LIFELINE__HEARTBEAT_INTERVAL": "1",
    "JOBENGINE_LIFELINE__RESCUE_AFTER": "6",
    "JOBENGINE_POLL_INTERVAL": "1",
}


def container(tool: str, args: list[str]) -> str:
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tool} {' '.join(args[:3])}...: {done.stderr.strip()}")
    return done.stdout.strip()


def start(tool: str, image: str, name: str, url: str, port: int, extra: list[str]) -> None:
    env = {**SETTINGS, "JOBENGINE_DATABASE_URL": url, "JOBENGINE_DASHBOARD__BIND": f"127.0.0.1:{port}",
           "JOBENGINE_NODE_NAME": name}
    flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
    container(tool, ["run", "-d", "--rm", "--name", name, "--network", "host", *extra, *flags, image])


async def count(url: str, schema: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        states = dict(await conn.fetch(f"SELECT state, count(*) FROM {schema}.jobs GROUP BY state"))
        nodes = [r["name"] for r in await conn.fetch(f"SELECT name FROM {schema}.nodes ORDER BY name")]
        rescued = await conn.fetchval(f"SELECT count(*) FROM {schema}.jobs WHERE rescued > 0")
        by_node = dict(await conn.fetch(f"SELECT attempted_by, count(*) FROM {schema}.jobs "
                                        "WHERE state = 'completed' GROUP BY attempted_by"))
    finally:
        await conn.close()
    return {"states": states, "nodes": nodes, "rescued": rescued, "completed_by": by_node}


async def wait_for(url: str, check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g}s waiting for {what}: {await count(url, 'jobengine')}")
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(args.url)
    await conn.execute("DROP SCHEMA IF EXISTS jobengine CASCADE")
    await conn.close()
    names = [f"jobengine-scale-{n}" for n in range(1, args.replicas + 1)]
    extra = args.run_flag or []
    began = time.time()
    result: dict[str, Any] = {"replicas": args.replicas, "jobs": args.jobs, "image": args.image, "tool": args.tool}
    try:
        for number, name in enumerate(names):
            await asyncio.to_thread(start, args.tool, args.image, name, args.url, 18100 + number, extra)
        async with Engine(config=Config.model_validate({"database_url": args.url})) as client:
            await wait_for(args.url, lambda: _nodes_up(args), f"{args.replicas} nodes heartbeating", 60)
            result["all_up_s"] = round(time.time() - began, 1)
            specs = [{"jobType": "log", "data": {"message": f"scaled {n}"}} for n in range(args.jobs)]
            enqueued = time.time()
            await client.enqueue_many(specs)
            # Kill one replica once a third of the jobs are done: its running jobs are rescued.
            await wait_for(args.url, lambda: _completed(args, args.jobs // 3), "a third of the jobs completed", 120)
            await asyncio.to_thread(container, args.tool, ["kill", "--signal", "KILL", names[-1]])
            result["killed"] = names[-1]
            await wait_for(args.url, lambda: _completed(args, args.jobs), "every job completed", 120)
            result["drained_s"] = round(time.time() - enqueued, 1)
            result.update(await count(args.url, "jobengine"))
    finally:
        for name in names:
            await asyncio.to_thread(subprocess.run, [args.tool, "rm", "-f", name], capture_output=True, check=False)
    # Only the killed replica's running jobs (at most its concurrency) went back, each once.
    concurrency = int(SETTINGS["JOBENGINE_QUEUES__DEFAULT__CONCURRENCY"])
    result["ok"] = result.get("states") == {"completed": args.jobs} and 0 < result["rescued"] <= concurrency
    return result


async def _nodes_up(args: argparse.Namespace) -> bool:
    return len((await count(args.url, "jobengine"))["nodes"]) >= args.replicas


async def _completed(args: argparse.Namespace, at_least: int) -> bool:
    return int((await count(args.url, "jobengine"))["states"].get("completed", 0)) >= at_least


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Postgres the containers and this script reach")
    parser.add_argument("--image", default="localhost/jobengine:dev")
    parser.add_argument("--tool", default="podman")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--run-flag", action="append", help="extra flag for `run` (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
