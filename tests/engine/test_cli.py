"""The jobengine CLI as users run it: a real subprocess against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.support.urls import as_user

ROOT = Path(__file__).resolve().parents[2]
SEED_PRIORITY_EXAMPLE = """{
  "priority": 10,  // 높은 우선순위
  "delay": 5000,   // 5초 지연
  "attempts": 3    // 최대 3회 재시도
}"""


@pytest.fixture
def cli(pg_url: str, schema: str, tmp_path: Path):
    config = tmp_path / "jobengine.toml"
    config.write_text(f'database_url = "{pg_url}"\nschema = "{schema}"\nmodules = ["examples.demo"]\n'
                      "[dashboard]\nenabled = false\n")

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "JOBENGINE_LOGGING__LEVEL": "warning"}
        done = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--config", str(config)],
                              input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"jobengine {' '.join(args)} failed: {done.stderr}")
        return done

    return run


def test_help_teaches_with_examples() -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0
    assert "jobengine enqueue --file job.json" in done.stdout
    assert "JOBENGINE_DATABASE_URL" in done.stdout


def test_migrate_enqueue_list_show_cancel_retry_and_stats(cli, tmp_path: Path) -> None:
    assert "up to date" in cli("migrate").stdout or cli("migrate").returncode == 0
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"jobType": "log", "data": {"level": "info", "message": "hi"}, "priority": 3}))
    job = json.loads(cli("enqueue", "--file", str(job_file), "--json").stdout)
    assert (job["kind"], job["priority"], job["state"]) == ("log", 3, "available")
    second = json.loads(cli("enqueue", "log", "--args", '{"level": "warn", "message": "x"}', "--json").stdout)
    listed = json.loads(cli("jobs", "--kind", "log", "--json").stdout)
    assert [j["id"] for j in listed] == [second["id"], job["id"]]
    assert json.loads(cli("show", str(job["id"]), "--json").stdout)["args"]["message"] == "hi"
    assert "cancelled" in cli("cancel", str(job["id"])).stdout
    assert "retried" in cli("retry", str(job["id"])).stdout
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats == {"default": {"available": 2}}
    assert "available" in cli("stats").stdout


def test_enqueue_accepts_the_seed_options_example_with_comments(cli, tmp_path: Path) -> None:
    options = tmp_path / "options.json"
    options.write_text(SEED_PRIORITY_EXAMPLE)
    job = json.loads(cli("enqueue", "demo.tick", "--file", str(options), "--json").stdout)
    assert (job["priority"], job["max_attempts"], job["state"]) == (10, 3, "scheduled")


def test_bad_input_gets_a_clear_error_and_exit_code(cli) -> None:
    done = cli("enqueue", "nosuchkind", "--args", "{}", check=False)
    assert done.returncode != 0
    assert "no handler registered for kind 'nosuchkind'" in done.stderr
    done = cli("retry", "999999", check=False)
    assert done.returncode == 1 and "was not retried" in done.stdout


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[queues.default]\nconcurency = 3\n")
    done = subprocess.run([sys.executable, "-m", "engine.cli", "stats", "--config", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0
    assert "unknown key 'queues.default.concurency'" in done.stderr


def test_an_unknown_state_exits_2_naming_the_valid_ones_and_several_states_work(cli) -> None:
    done = cli("jobs", "--state", "bogus", check=False)
    assert done.returncode == 2
    assert "unknown state 'bogus'" in done.stderr and "discarded" in done.stderr and "retryable" in done.stderr
    cli("enqueue", "log", "--args", '{"level": "info", "message": "a"}')
    cli("enqueue", "log", "--args", '{"level": "info", "message": "b"}', "--delay", "60000")
    listed = json.loads(cli("jobs", "--state", "available,scheduled", "--json").stdout)
    assert sorted(job["state"] for job in listed) == ["available", "scheduled"]
    assert json.loads(cli("jobs", "--state", "discarded,retryable", "--json").stdout) == []


def test_invalid_json_in_args_says_so_and_where(cli) -> None:
    done = cli("enqueue", "log", "--args", '{"level": info}', check=False)
    assert done.returncode == 1
    assert "--args is not valid JSON: Expecting value at line 1 column 11" in done.stderr
    assert '  {"level": info}\n            ^' in done.stderr


def test_jobs_query_finds_by_args_and_exits_2_naming_a_bad_term(cli) -> None:
    cli("migrate")
    wanted = json.loads(cli("enqueue", "log", "--args", '{"level": "info", "message": "to ops"}', "--json").stdout)
    cli("enqueue", "log", "--args", '{"level": "warn", "message": "other"}')
    listed = json.loads(cli("jobs", "--query", 'args.message:"to ops" kind:log', "--json").stdout)
    assert [job["id"] for job in listed] == [wanted["id"]]
    bad = cli("jobs", "--query", "kind:log colour:red", check=False)
    assert bad.returncode == 2 and "colour:red" in bad.stderr and "unknown qualifier" in bad.stderr, bad.stderr
    assert json.loads(cli("jobs", "--query", "definition:nightly", "--json").stdout) == []


def _config_for(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "unavailable.toml"
    config.write_text(f'database_url = "{url}"\nquery_timeout = 0.5\n[dashboard]\nenabled = false\n')
    return config


def _run_stats(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBENGINE_LOGGING__LEVEL": "error"}
    return subprocess.run([sys.executable, "-m", "engine.cli", "stats", "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)


def test_a_command_gives_up_on_an_unreachable_database_and_says_so(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _run_stats(_config_for(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/postgres"))
    assert done.returncode != 0
    assert "database not available after" in done.stderr and "unreachable: " in done.stderr, done.stderr


def test_a_command_refused_for_too_many_connections_says_refused_not_unreachable(pg_url: str,
                                                                                 tmp_path: Path) -> None:
    role = f"je_full_{uuid.uuid4().hex[:8]}"
    admin = admin_statement(pg_url)
    admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')  # refused before it can log in
    try:
        done = _run_stats(_config_for(tmp_path, as_user(pg_url, role)))
    finally:
        admin(f'DROP ROLE "{role}"')
    assert done.returncode != 0
    assert "refused: too many connections" in done.stderr and "unreachable" not in done.stderr, done.stderr


def admin_statement(pg_url: str) -> Callable[[str], None]:
    """Run one statement as the admin user (asyncpg in its own loop)."""
    def run(statement: str) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()
        asyncio.run(go())
    return run
