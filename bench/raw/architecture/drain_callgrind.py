"""A drain through the real engine on a real Postgres: enqueue N no-op jobs in batches of
1,000, run them with one engine (concurrency 32), stop. Run under callgrind with N=0 and
N=6000 to get the engine's Python instructions per job (Postgres is another process)::

    valgrind --tool=callgrind python drain_callgrind.py 6000      # minus the run with 0

Works on the flat layout before the refactor (engine/config.py) and on the packages after.
"""

import asyncio
import importlib
import sys
import uuid
from pathlib import Path

import asyncpg

from engine import Engine, JobSpec, Registry

N = int(sys.argv[1])
URL = sys.argv[2] if len(sys.argv) > 2 else "postgresql://postgres@127.0.0.1:5432/je_ab"
FLAT = (Path(importlib.import_module("engine").__file__).parent / "config.py").exists()
build_config = importlib.import_module("engine.config" if FLAT else "engine.core.config").build_config

registry = Registry()


@registry.handler("noop")
async def noop(job: object) -> None:
    return None


async def drained(engine: Engine) -> None:
    """Until every job completed: the stats view read every 50 ms."""
    for _ in range(100_000):
        if not N or (await engine.stats()).get("default", {}).get("completed", 0) >= N:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the drain did not finish")


async def main() -> None:
    schema = "ab_" + uuid.uuid4().hex[:8]
    settings = {"schema": schema, "queues": {"default": {"concurrency": 32}}, "poll_interval": 0.2,
                "dashboard": {"enabled": False}, "logging": {"level": "warning"}}
    async with Engine(URL, config=build_config(settings), registry=registry) as engine:
        for start in range(0, N, 1000):
            await engine.enqueue_many([JobSpec(kind="noop", args={"i": i}) for i in range(start, min(N, start + 1000))])
        await drained(engine)
    conn = await asyncpg.connect(URL)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


asyncio.run(main())
