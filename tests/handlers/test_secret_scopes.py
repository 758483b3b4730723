"""Secret scopes: a secret declared with ``[secrets.NAME] hosts/kinds`` is refused, before any
connection, in a job that would send it elsewhere; the message names the secret and the target."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.config import ConfigError, build_config, load_config
from engine.core.secrets import SecretScopeError
from tests.handlers.conftest import HttpPeer, SshPeer

TOKEN = "tok-scoped-0123456789"


async def test_http_secret_goes_only_to_its_hosts(make_harness, http_peer: HttpPeer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1", "localhost"]}, secrets={"API_TOKEN": TOKEN},
                           secret_scopes={"API_TOKEN": {"hosts": ["api.example.com"], "kinds": ["http"]}})
    url = http_peer.url("/echo?t={{API_TOKEN}}")
    with pytest.raises(SecretScopeError, match=r"secret API_TOKEN may not be sent to 127\.0\.0\.1 "
                                               r"\(its hosts: api\.example\.com\)"):
        await harness.run("http", {"url": url})
    with pytest.raises(SecretScopeError, match="API_TOKEN may not be sent to localhost"):
        await harness.run("http", {"url": http_peer.url("/echo", host="localhost"),
                                   "headers": {"Authorization": "Bearer {{secrets.API_TOKEN}}"}})
    assert http_peer.requests == []


async def test_a_secret_is_used_where_its_scope_allows(make_harness, http_peer: HttpPeer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1"]}, secrets={"API_TOKEN": TOKEN},
                           secret_scopes={"API_TOKEN": {"hosts": ["127.0.0.1"]}})
    result = await harness.run("http", {"url": http_peer.url("/echo"), "headers": {"X-Token": "{{API_TOKEN}}"}})
    assert result["body"]["headers"]["X-Token"] == TOKEN
    # A job that does not use the secret is not concerned by its scope.
    assert (await harness.run("http", {"url": http_peer.url("/echo")}))["status"] == 200


async def test_ssh_secret_goes_only_to_its_hosts(make_harness, ssh_peer: SshPeer) -> None:
    harness = make_harness(ssh=ssh_peer.settings(), secrets={"DB_PASS": "db-pass-123"},
                           secret_scopes={"DB_PASS": {"hosts": ["*.db.internal"]}})
    args = {"host": "127.0.0.1", "port": ssh_peer.port, "username": "jobs", "command": "echo -p{{DB_PASS}}"}
    with pytest.raises(SecretScopeError, match=r"secret DB_PASS may not be sent to 127\.0\.0\.1"):
        await harness.run("ssh", args)
    assert ssh_peer.connections == []
    allowed = make_harness(ssh=ssh_peer.settings(), secrets={"DB_PASS": "db-pass-123"},
                           secret_scopes={"DB_PASS": {"hosts": ["127.0.0.1"], "kinds": ["ssh"]}})
    assert (await allowed.run("ssh", args))["stdout"] == "-pdb-pass-123\n"


def test_both_config_forms_and_the_default_kinds(tmp_path: Path) -> None:
    assert set(build_config({"secrets": ["A", "B"]}).secrets) == {"A", "B"}
    file = tmp_path / "jobengine.toml"
    file.write_text('[secrets.PLAIN]\n[secrets.API_TOKEN]\nhosts = ["api.example.com"]\n'
                    '[secrets.MAIL_KEY]\nkinds = ["mail"]\n')
    config = load_config(file, env={})
    assert config.secrets["API_TOKEN"].kinds == ["http", "ssh"]  # hosts bind it to the kinds that have one
    assert config.secrets["MAIL_KEY"].hosts is None and config.secrets["PLAIN"].kinds is None
    with pytest.raises(ConfigError, match=r"secrets\.X\.host"):
        build_config({"secrets": {"X": {"host": ["a"]}}})
