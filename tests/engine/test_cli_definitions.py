"""``jobengine definitions`` as users run it: a real subprocess against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(pg_url: str, schema: str, tmp_path: Path) -> Cli:
    config = tmp_path / "jobengine.toml"
    config.write_text(f'database_url = "{pg_url}"\nschema = "{schema}"\n[dashboard]\nenabled = false\n')

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "JOBENGINE_LOGGING__LEVEL": "warning"}
        done = subprocess.run([sys.executable, "-m", "engine.cli", "definitions", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"jobengine definitions {' '.join(args)} failed: {done.stderr}")
        return done

    return run


def _file(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / f"{body['name']}.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_add_list_show_update_run_runs_disable_and_remove(cli: Cli, tmp_path: Path) -> None:
    body = {"name": "backup", "description": "dump the DB", "tags": ["db"],
            "trigger": {"type": "cron", "schedule": "0 2 * * *", "timezone": "Asia/Seoul"},
            "job": {"jobType": "log", "data": {"message": "backup of {{db}}"}}}
    added = json.loads(cli("add", "--file", _file(tmp_path, body), "--json").stdout)
    assert added["name"] == "backup" and added["createdBy"].startswith("cli:")
    table = cli("list").stdout
    assert "backup" in table and "0 2 * * * (Asia/Seoul)" in table
    listed = json.loads(cli("list", "--json").stdout)
    assert [item["name"] for item in listed] == ["backup"]
    shown = json.loads(cli("show", "backup", "--json").stdout)
    assert shown["trigger"]["timezone"] == "Asia/Seoul" and shown["nextRunAt"]
    body["description"] = "dump the game DB"
    assert "updated" in cli("update", "backup", "--file", _file(tmp_path, body)).stdout
    ran = json.loads(cli("run", "backup", "--vars", '{"db": "game"}', "--json").stdout)
    runs = json.loads(cli("runs", "backup", "--json").stdout)
    assert [run["id"] for run in runs] == [ran["jobId"]] and runs[0]["state"] == "available"
    assert json.loads(cli("disable", "backup", "--json").stdout)["enabled"] is False
    assert "removed" in cli("remove", "backup").stdout
    assert "no definitions" in cli("list").stdout


def test_bad_input_exits_1_naming_the_field(cli: Cli, tmp_path: Path) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {"name": "late", "trigger": {"type": "once", "at": past}, "job": {"jobType": "log", "data": {}}}
    done = cli("add", "--file", _file(tmp_path, body), check=False)
    assert done.returncode == 1 and "trigger.at" in done.stderr and "in the past" in done.stderr
    body = {"name": "typo", "job": {"jobType": "log", "data": {"message": "x"}, "atempts": 2}}
    done = cli("add", "--file", _file(tmp_path, body), check=False)
    assert done.returncode == 1 and "job.atempts: unknown field (did you mean 'attempts'?)" in done.stderr
    done = cli("show", "missing", check=False)
    assert done.returncode == 1 and "no definition 'missing'" in done.stderr
    assert "no definitions" in cli("list").stdout
