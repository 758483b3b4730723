"""``jobengine start`` serves the dashboard: on 127.0.0.1 only when no token is set (and it
says so), and a second engine on the same host runs without one instead of failing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", "start", "--config", str(config)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _logged(log: Path, text: str) -> dict[str, Any] | None:
    return next((e for e in _events(log) if text in str(e.get("event", ""))), None)


def _config(path: Path, pg_url: str, schema: str, dashboard: str) -> Path:
    path.write_text(f'database_url = "{pg_url}"\nschema = "{schema}"\n[queues.default]\nconcurrency = 2\n'
                    f'[logging]\nformat = "json"\n[dashboard]\n{dashboard}\n')
    return path


async def test_start_serves_the_dashboard_on_loopback_without_a_token(pg_url, schema, tmp_path) -> None:
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(_config(tmp_path / "a.toml", pg_url, schema, 'bind = "0.0.0.0:0"'), first_log)
    second = None
    try:
        listening = await wait_until(lambda: _logged(first_log, "dashboard listening"), timeout=20)
        assert listening["url"].startswith("http://127.0.0.1:")
        assert _logged(first_log, "refusing to listen on 0.0.0.0")
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:  # the dashboard may listen before the listener has connected
                async with http.get(listening["url"] + "/healthz") as response:
                    return response.status == 200

            await wait_until(healthy, timeout=10)
            async with http.get(listening["url"] + "/api/queues") as response:
                assert response.status == 200 and (await response.json())["queues"][0]["name"] == "default"
        port = listening["url"].rsplit(":", 1)[1]
        second = _start(_config(tmp_path / "b.toml", pg_url, schema,
                                f'bind = "127.0.0.1:{port}"\ntoken = "a-long-operator-token"'), second_log)
        assert await wait_until(lambda: _logged(second_log, "dashboard not started"), timeout=20)
        assert await wait_until(lambda: _logged(second_log, "engine started"), timeout=5)
        assert second.poll() is None  # still running: it processes jobs without a dashboard
    finally:
        for process in (second, first):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in (first, second) if p is not None]
    assert codes == [0, 0], first_log.read_text()[-2000:]
