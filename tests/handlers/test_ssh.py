"""The ssh handler against a real asyncssh server that runs commands with /bin/sh."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from pydantic import ValidationError

from engine.core.attempt_log import MAX_LINE_CHARS, MAX_LINES
from engine.core.outcomes import PermanentError
from engine.core.registry import Registry
from engine.core.shell import UnsafeShellValueError
from engine.testing import wait_for_job
from handlers.ssh import HostKeyChangedError, HostKeyUnknownError, SshArgs, SshCommandError, SshError, ssh_pool
from handlers.ssrf import SsrfRefusedError
from tests.handlers.conftest import SshPeer
from tests.support.waiting import wait_until


def job(peer: SshPeer, command: str, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": peer.port, "username": "jobs", "command": command, **extra}


def install_known_hosts(peer: SshPeer, ssh_dir: Path) -> None:
    ssh_dir.mkdir(parents=True)
    (ssh_dir / "known_hosts").write_text(Path(peer.known_hosts_file).read_text())


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def test_command_runs_and_returns_its_output(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    result = await harness.run("ssh", job(ssh_peer, "echo hello; echo warn >&2"))
    assert result == {"exitCode": 0, "stdout": "hello\n", "stderr": "warn\n"}


async def test_non_zero_exit_is_a_retryable_failure_with_code_and_stderr(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    with pytest.raises(SshCommandError, match="exited with status 3: disk full") as caught:
        await harness.run("ssh", job(ssh_peer, "echo partial; echo disk full >&2; exit 3"))
    assert not isinstance(caught.value, PermanentError)
    assert (caught.value.exit_code, caught.value.stdout) == (3, "partial\n")


async def test_seed_restart_example_with_placeholders(make_harness, ssh_peer, tmp_path: Path) -> None:
    script = tmp_path / "restart-server.sh"
    script.write_text('#!/bin/sh\necho "restarting [$1]"\n')
    script.chmod(0o755)
    args = {"host": "{{serverHost}}", "port": "{{sshPort}}", "username": "{{sshUser}}",
            "command": "cd {{dir}} && ./restart-server.sh {{serverId}}", "timeout": 60000}
    vars = {"serverHost": "127.0.0.1", "sshPort": ssh_peer.port, "sshUser": "jobs",
            "dir": str(tmp_path), "serverId": "game 01; reboot"}
    result = await make_harness(ssh=ssh_peer.settings()).run("ssh", args, vars=vars)
    assert result["stdout"] == "restarting [game 01; reboot]\n"


async def test_timeout_kills_the_remote_command(make_harness, ssh_peer, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    harness = make_harness(ssh=ssh_peer.settings())
    command = "echo $$ > {{pidfile}}; exec sleep 30"
    with pytest.raises(SshError, match=r"timed out after 0.5s"):
        await harness.run("ssh", job(ssh_peer, command, timeout=500), vars={"pidfile": str(pidfile)})
    pid = int(pidfile.read_text())
    await wait_until(lambda: not process_alive(pid))


INJECTIONS = [
    "1; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "'; touch {marker}; echo '",
    '"; touch {marker}; echo "',
    "| touch {marker}",
    "&& touch {marker} &&",
    "*",
    "${{IFS}}touch${{IFS}}{marker}",
    "~root",
    "a  b c",
    "#not a comment",
]


@pytest.mark.parametrize("template", INJECTIONS)
async def test_injected_values_arrive_as_one_literal_argument(make_harness, ssh_peer, marker, template) -> None:
    value = template.format(marker=marker)
    harness = make_harness(ssh=ssh_peer.settings())
    result = await harness.run("ssh", job(ssh_peer, "printf '%s\\n' {{v}} > /dev/null; printf '[%s]\\n' {{v}}"),
                               vars={"v": value})
    assert result["stdout"] == f"[{value}]\n"
    assert not marker.exists()


@pytest.mark.parametrize("value", ["a\ntouch {marker}", "-n", "--output={marker}", "x\r", "tab\t", "nul\0"])
async def test_unsafe_values_are_refused_before_connecting(make_harness, ssh_peer, marker, value) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    with pytest.raises(UnsafeShellValueError, match=r"\{\{v\}\}"):
        await harness.run("ssh", job(ssh_peer, "touch {{v}}"), vars={"v": value.format(marker=marker)})
    assert ssh_peer.connections == [] and not marker.exists()


@pytest.mark.parametrize("command", ["[ 5 -gt {{v}} ] || true", "test -v {{v}} || true", "find {{v}} -delete"])
async def test_evaluated_or_operator_values_are_refused_before_connecting(
        make_harness, ssh_peer, marker, command) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    value = f"a[$(touch {marker})]" if "find" not in command else "!"
    with pytest.raises(UnsafeShellValueError, match=r"\{\{v\}\}"):
        await harness.run("ssh", job(ssh_peer, command), vars={"v": value})
    assert ssh_peer.connections == [] and not marker.exists()


async def test_a_value_glued_to_an_option_may_start_with_a_dash(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings(), secrets={"DB_PASS": "-p4ss 'word"})
    result = await harness.run("ssh", job(ssh_peer, "printf '%s\\n' -p{{DB_PASS}}"))
    assert result["stdout"] == "-p-p4ss 'word\n"


async def test_unknown_host_key_is_permanent(make_harness, ssh_peer, tmp_path: Path) -> None:
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[10.9.9.9]:22 {ssh_peer.host_key.export_public_key().decode()}")
    harness = make_harness(ssh=ssh_peer.settings(known_hosts=str(other)))
    with pytest.raises(HostKeyUnknownError, match=rf"host key for 127.0.0.1:{ssh_peer.port} is unknown"):
        await harness.run("ssh", job(ssh_peer, "touch x"))


async def test_changed_host_key_has_its_own_error(make_harness, ssh_peer, tmp_path: Path) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{ssh_peer.port} {impostor}")
    harness = make_harness(ssh=ssh_peer.settings(known_hosts=str(changed)))
    with pytest.raises(HostKeyChangedError, match=rf"host key for 127.0.0.1:{ssh_peer.port} changed"):
        await harness.run("ssh", job(ssh_peer, "echo hi"))


async def test_without_known_hosts_setting_the_default_file_is_used(
    make_harness, ssh_peer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh/known_hosts: nothing is trusted
    harness = make_harness(ssh={"client_keys": [ssh_peer.client_key_file], "allow": ["127.0.0.1"]})
    with pytest.raises(HostKeyUnknownError):
        await harness.run("ssh", job(ssh_peer, "echo hi"))
    install_known_hosts(ssh_peer, tmp_path / "home" / ".ssh")
    assert (await harness.run("ssh", job(ssh_peer, "echo hi")))["stdout"] == "hi\n"


async def test_wrong_client_key_is_permanent(make_harness, ssh_peer, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    harness = make_harness(ssh=ssh_peer.settings(client_keys=[str(stranger)]))
    with pytest.raises(PermanentError, match="authentication as jobs"):
        await harness.run("ssh", job(ssh_peer, "echo hi"))


async def test_connection_refused_is_retryable(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    args = job(ssh_peer, "echo hi")
    args["port"] = 1
    with pytest.raises(SshError, match=r"connection to 127\.0\.0\.1:1 failed"):
        await harness.run("ssh", args)


async def test_one_pooled_connection_serves_many_jobs_and_closes_at_stop(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings())
    results = await asyncio.gather(*(harness.run("ssh", job(ssh_peer, f"echo {i}")) for i in range(12)))
    assert [r["stdout"] for r in results] == [f"{i}\n" for i in range(12)]
    assert len(ssh_peer.connections) == 1
    pool = await harness.resources.get(ssh_pool)
    (entry,) = pool._entries.values()
    await harness.resources.aclose()
    assert entry.conn.is_closed()


async def test_output_is_capped(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings(max_output_bytes=1000))
    result = await harness.run("ssh", job(ssh_peer, "head -c 300000 /dev/zero | tr '\\0' x"))
    assert result["stdout"] == "x" * 1000


# --- output streamed into the attempt log ---


async def test_output_lines_reach_the_attempt_log_redacted_and_the_result_is_unchanged(
    make_harness, ssh_peer
) -> None:
    harness = make_harness(ssh=ssh_peer.settings(), secrets={"DB_PASS": "s3cret-db-pass-99"})
    command = "echo copying; echo 'login with s3cret-db-pass-99' >&2; printf 'half'; sleep 0.05; printf 'way\\r\\nend'"
    result = await harness.run("ssh", job(ssh_peer, command))

    assert result == {"exitCode": 0, "stdout": "copying\nhalfway\r\nend", "stderr": "login with s3cret-db-pass-99\n"}
    lines = harness.attempt_lines()
    assert [line for line in lines if line.startswith("stdout")] == ["stdout copying", "stdout halfway", "stdout end"]
    assert "stderr login with ***" in lines
    assert not any("s3cret" in line for line in lines)


async def test_a_huge_output_keeps_the_last_lines_each_capped(make_harness, ssh_peer) -> None:
    harness = make_harness(ssh=ssh_peer.settings(max_output_bytes=1000))
    command = "head -c 200000 /dev/zero | tr '\\0' x; echo ' tail of the long line'; seq 1 300000"
    result = await harness.run("ssh", job(ssh_peer, command))

    assert len(result["stdout"]) == 1000
    lines = harness.attempt_lines()
    assert len(lines) == MAX_LINES and lines[-1] == "stdout 300000" and lines[0] == f"stdout {300_001 - MAX_LINES}"
    long = make_harness(ssh=ssh_peer.settings())
    await long.run("ssh", job(ssh_peer, "head -c 200000 /dev/zero | tr '\\0' x; echo ' tail'; echo next"))
    cut, after = long.attempt_lines()
    assert cut == "stdout " + "x" * (MAX_LINE_CHARS - len("00:00:00 stdout ")) and after == "stdout next"


async def test_the_first_line_shows_in_the_stored_attempt_log_while_the_command_runs(
    start_engine, ssh_peer: SshPeer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SSH_TEST_TOKEN", "tok-4f9a-secret")
    engine = await start_engine(Registry(), queues={"default": {"concurrency": 2}}, ssh=ssh_peer.settings(),
                                secrets=["SSH_TEST_TOKEN"])
    gate, remote_file = tmp_path / "gate", tmp_path / "app.env"
    remote_file.write_text("token=tok-4f9a-secret\n")  # the remote side prints a secret it holds
    command = "echo first; cat {{file}}; while [ ! -e {{gate}} ]; do sleep 0.02; done; echo last"
    queued = await engine.enqueue("ssh", job(ssh_peer, command), vars={"gate": str(gate), "file": str(remote_file)})

    async def lines() -> list[str]:
        logs = await engine.store.attempt_logs(queued.id)  # type: ignore[union-attr]
        return [line.split(" ", 1)[1] for line in logs[0]["lines"]] if logs else []

    await wait_until(lambda: _has(lines(), "stdout first"), what="the first line in the stored attempt log")
    assert (await engine.get(queued.id)).state == "executing"  # type: ignore[union-attr]
    assert "stdout token=***" in await lines() and "stdout last" not in await lines()
    gate.touch()
    done = await wait_for_job(engine, queued.id)
    assert done.state == "completed" and done.result["stdout"] == "first\ntoken=***\nlast\n"
    await wait_until(lambda: _has(lines(), "stdout last"))
    assert not any("tok-4f9a" in line for line in await lines())


async def _has(lines: Any, wanted: str) -> bool:
    return wanted in await lines


def test_enqueue_accepts_seed_payloads_and_names_mistakes() -> None:
    SshArgs.model_validate({"host": "game-server-01.example.com", "port": 22, "username": "admin",
                            "command": "sudo systemctl restart game-server", "timeout": 30000})
    SshArgs.model_validate({"host": "{{logServer}}", "username": "{{sshUser}}",
                            "command": "find /var/log/game -name '*.log' -mtime +7 -delete", "timeout": 30000})
    SshArgs.model_validate({"host": "{{dbServer}}", "username": "{{sshUser}}", "timeout": 300000,
                            "command": "mysqldump -u {{dbUser}} -p{{dbPass}} {{dbName}} > "
                                       "/backup/{{dbName}}_$(date +%Y%m%d).sql"})
    with pytest.raises(ValidationError, match="comand"):
        SshArgs.model_validate({"host": "h", "comand": "ls"})
    with pytest.raises(ValidationError, match="host"):
        SshArgs.model_validate({"host": "-oProxyCommand=evil", "command": "ls"})


# --- the address policy ---


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
async def test_loopback_is_refused_unless_allowed(make_harness, ssh_peer, host: str) -> None:
    harness = make_harness(ssh=ssh_peer.settings(allow=[]))
    with pytest.raises(SsrfRefusedError, match=r"loopback address; list it in \[ssh\].allow"):
        await harness.run("ssh", {**job(ssh_peer, "echo hi"), "host": host})
    assert ssh_peer.connections == []


@pytest.mark.parametrize("allow", [[], ["169.254.0.0/16"], ["0.0.0.0/0"]])
async def test_metadata_is_refused_even_inside_an_allowed_range(make_harness, ssh_peer, allow: list[str]) -> None:
    harness = make_harness(ssh=ssh_peer.settings(allow=allow))
    with pytest.raises(SsrfRefusedError, match="cloud metadata"):
        await harness.run("ssh", {**job(ssh_peer, "echo hi"), "host": "169.254.169.254"})


async def test_deny_wins_and_names_are_checked_at_their_address(make_harness, ssh_peer) -> None:
    denied = make_harness(ssh=ssh_peer.settings(allow=["127.0.0.0/8"], deny=["127.0.0.1"]))
    with pytest.raises(SsrfRefusedError, match=r"denied by \[ssh\].deny"):
        await denied.run("ssh", {**job(ssh_peer, "echo hi"), "host": "localhost"})
    assert ssh_peer.connections == []
    # localhost may resolve to ::1 first: refused (not allowed), so 127.0.0.1 is the one used.
    by_name = make_harness(ssh=ssh_peer.settings(allow=["127.0.0.1"]))
    result = await by_name.run("ssh", {**job(ssh_peer, "echo hi"), "host": "localhost"})
    assert result["stdout"] == "hi\n"
