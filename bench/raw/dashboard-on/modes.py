"""Worker CPU per drained job with the dashboard off, on with no page open, and on with one
``/events`` stream (docs/performance.md, "The dashboard and /metrics on"). A throwaway
measurement kept with its output; run from the repository root:

    .venv/bin/python bench/raw/dashboard-on/modes.py off,idle,sse 3
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench import workloads
from bench.dashboard_on import Traffic, _free_port, measured
from bench.engines import JobengineAdapter
from bench.server import BenchServer


async def main(modes: list[str], rounds: int) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    dashboard = {"enabled": True, "bind": f"127.0.0.1:{port}", "refresh_interval": 2.0}
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    with BenchServer.start() as server:
        url = server.create_database("dashboard_modes")
        off = workloads.Context(server=server, jobs=100_000)
        on = workloads.Context(server=server, jobs=100_000, options={"jobengine": {"dashboard": dashboard}})
        adapter = JobengineAdapter(url)
        await adapter.open()
        try:
            for round_ in range(rounds):
                for mode in modes:
                    # idle: one page load, then nothing; sse: one open /events stream besides.
                    traffic = {"off": None, "idle": Traffic(base, 0, 1e6, 1e6),
                               "sse": Traffic(base, 1, 1e6, 1e6)}[mode]
                    result = await measured(off if mode == "off" else on, adapter, "drain", traffic)
                    results[mode].append(result)
                    print(round_, mode, f"rate={result['rate']:.0f} worker_us={result['cpu_per_1k'] * 1000:.1f} "
                          f"pg_us={result['pg_cpu_per_1k'] * 1000:.1f}", flush=True)
        finally:
            await adapter.close()
    for mode in modes:
        print(mode, "median rate", round(statistics.median(r["rate"] for r in results[mode])),
              "worker us/job", round(statistics.median(r["cpu_per_1k"] for r in results[mode]) * 1000, 1))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2])))
