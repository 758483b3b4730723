"""The ``ssh`` handler: run one command on a remote host over a pooled SSH connection.

Example payload (docs/job-documents.md has them all)::

    {"host": "{{serverHost}}", "username": "{{sshUser}}",
     "command": "cd /opt/game && ./restart-server.sh {{serverId}}", "timeout": 60000}

The command is an operator-written template: every ``{{placeholder}}`` in it is replaced by
its value as exactly one shell-quoted word (``engine.core.templating.render_shell``), so a value
can never start a second command. Host keys are always checked, against ``[ssh].known_hosts``
or ``~/.ssh/known_hosts``: an unknown key and a changed key fail the job for good, each with
its own message. On timeout the channel is closed (and the process signalled) so the remote
command does not keep running. While the command runs, its stdout and stderr lines go to the
attempt's log as they arrive (capped and redacted like every attempt log line), so the job
page shows them live; the result still carries the (capped) output. The host passes the same
address guard as http first (``[ssh].allow`` / ``deny``; private, loopback and metadata
addresses need an allow entry), and the connection goes to the address that was checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from engine.core.attempt_log import AttemptLog, OutputLines
from engine.core.config import Config, SshConfig
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.shell import render_shell
from engine.core.templating import render
from handlers.args import ArgsModel, InvalidArgsError, Templated, check_secret_target, shown, validate_rendered
from handlers.ssrf import AddressPolicy, SsrfRefusedError

# cryptography 51 deprecates DSA and warns as soon as asyncssh's import touches its DSA
# types, whatever key a job uses: five lines of plain text ahead of a JSON log on every
# start. Only that warning, only during the import, is silenced; a DSA key really used
# still warns, as a log line (engine.core.logs captures warnings).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

HOST = re.compile(r"^[A-Za-z0-9_.:\[\]%-]{1,255}$")
USERNAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}$")
# OpenSSH's default MaxSessions is 10 channels per connection; stay below it.
MAX_CHANNELS = 8
STDERR_IN_ERROR = 1_000


class SshError(Exception):
    """A retryable ssh failure: connection lost or refused, command failed or timed out."""


class SshCommandError(SshError):
    """The remote command exited non-zero (or died of a signal); retryable."""

    def __init__(self, message: str, exit_code: int | None, stdout: str, stderr: str) -> None:
        super().__init__(message)
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


class HostKeyUnknownError(PermanentError):
    """known_hosts has no key for the host."""


class HostKeyChangedError(PermanentError):
    """known_hosts has keys for the host, and the server presented another one."""


def _host(value: str) -> str:
    if not HOST.match(value) or value.startswith("-"):
        raise ValueError(f"{shown(value)} is not a host name or address")
    return value


def _username(value: str) -> str:
    if not USERNAME.match(value):
        raise ValueError(f"{shown(value)} is not a user name")
    return value


def _command(value: str) -> str:
    if not value.strip() or "\0" in value:
        raise ValueError("must be a non-empty command without NUL characters")
    return value


class SshArgs(ArgsModel):
    """Payload of an ``ssh`` job; ``timeout`` in milliseconds (default ``[ssh].command_timeout``).

    Example::

        SshArgs.model_validate({"host": "{{serverHost}}", "username": "admin",
                                "command": "./restart-server.sh {{serverId}}", "timeout": 60000})
    """

    host: Templated[Annotated[str, AfterValidator(_host)]]
    port: Templated[Annotated[int, Field(ge=1, le=65_535)]] = 22
    username: Templated[Annotated[str, AfterValidator(_username)]] | None = None
    command: Annotated[str, AfterValidator(_command)]
    timeout: Templated[Annotated[float, Field(gt=0, le=86_400_000)]] | None = None


async def run_command(job: Job, ctx: HandlerContext) -> dict[str, Any]:
    """Handler for kind ``ssh``: returns ``{"exitCode", "stdout", "stderr"}`` (capped to
    ``[ssh].max_output_bytes`` each); a non-zero exit raises :class:`SshCommandError`.

    Example result::

        {"exitCode": 0, "stdout": "restarted\\n", "stderr": ""}
    """
    args = render_args(job, ctx.scope)
    check_secret_target(ctx, job.kind, args.host)  # before connecting
    settings = ctx.config.ssh
    username = args.username or settings.username
    seconds = args.timeout / 1000 if args.timeout is not None else settings.command_timeout
    pool = await ctx.resources.get(ssh_pool)
    async with pool.connection(args.host, args.port, username) as conn:
        result = await execute(conn, args.command, seconds, settings.max_output_bytes, where=args.host,
                               log=ctx.attempt_log)
    ctx.logger.info("ssh command finished", host=args.host, exit_code=result["exitCode"])
    return result


def render_args(job: Job, scope: Mapping[str, Any]) -> SshArgs:
    """The stored args (render_args=False: the executor neither rendered nor validated
    them) rendered, the command with shell quoting, then validated once.

    Example::

        job.args                                                # {"host": "h", "command": "./restart.sh {{id}}"}
        render_args(job, Scope({"id": "1; rm -rf /"})).command   # "./restart.sh '1; rm -rf /'"
    """
    raw = job.args
    if not isinstance(raw, Mapping):
        raise InvalidArgsError(f"invalid args for {job.kind!r}: must be an object, not {type(raw).__name__}")
    rendered = {
        key: render_shell(value, scope) if key == "command" and isinstance(value, str) else render(value, scope)
        for key, value in raw.items()
    }
    return validate_rendered(SshArgs, rendered, kind=job.kind)


async def execute(
    conn: asyncssh.SSHClientConnection, command: str, seconds: float, cap: int, *, where: str,
    log: AttemptLog | None = None,
) -> dict[str, Any]:
    """Run ``command`` with stdin closed; kill it remotely when ``seconds`` pass. With an
    attempt ``log``, every line of stdout and stderr goes there as it arrives (the job page
    shows it live)."""
    try:
        async with conn.create_process(command, stdin=asyncssh.DEVNULL, encoding=None) as process:
            try:
                async with asyncio.timeout(seconds):
                    stdout, stderr = await asyncio.gather(
                        _drain(process.stdout, cap, None if log is None else OutputLines(log, "stdout")),
                        _drain(process.stderr, cap, None if log is None else OutputLines(log, "stderr")),
                    )
                    await process.wait_closed()
            except (TimeoutError, asyncio.CancelledError) as exc:
                # Leaving the block closes the channel; the signal is for servers (OpenSSH)
                # that let a command without a terminal outlive its channel. The job's own
                # timeout (a cancellation) gets the same treatment.
                _signal(process)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise SshError(f"command on {where} timed out after {seconds:g}s and was killed") from None
    except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
        raise SshError(f"ssh to {where} failed while running the command: {exc}") from None
    return _result(process, stdout, stderr, where)


def _signal(process: asyncssh.SSHClientProcess[bytes]) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):  # the channel may already be closing
        process.kill()


async def _drain(stream: asyncssh.SSHReader[bytes], cap: int, lines: OutputLines | None) -> str:
    """Read the stream to its end, keeping the first ``cap`` bytes (so the remote side
    never blocks on a full window, and memory stays bounded), each chunk also fed to
    ``lines`` as it arrives."""
    kept = bytearray()
    while chunk := await stream.read(65_536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
        if lines is not None:
            lines.feed(chunk)
    if lines is not None:
        lines.close()
    return kept.decode("utf-8", "replace")


def _result(
    process: asyncssh.SSHClientProcess[bytes], stdout: str, stderr: str, where: str
) -> dict[str, Any]:
    code = process.exit_status
    signal = process.exit_signal
    if code == 0:
        return {"exitCode": 0, "stdout": stdout, "stderr": stderr}
    if signal is not None:
        message = f"command on {where} was killed by signal {signal[0]}"
    elif code is None or code < 0:
        message = f"command on {where} ended without an exit status"
    else:
        message = f"command on {where} exited with status {code}"
    if stderr:
        message += f": {stderr[-STDERR_IN_ERROR:]}"
    raise SshCommandError(message, code, stdout, stderr)


@dataclass(slots=True)
class _Entry:
    conn: asyncssh.SSHClientConnection
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CHANNELS))
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)


class SshPool:
    """Connections per (host, port, username), reused across jobs, closed with the engine.

    Example::

        async with pool.connection("game-01", 22, "admin") as conn:
            await conn.run("uptime", stdin=asyncssh.DEVNULL)
    """

    def __init__(self, settings: SshConfig) -> None:
        self._settings = settings
        self._policy = AddressPolicy.from_lists(settings.allow, settings.deny, section="ssh")
        self._entries: dict[tuple[str, int, str | None], _Entry] = {}
        self._locks: dict[tuple[str, int, str | None], asyncio.Lock] = {}

    @asynccontextmanager
    async def connection(
        self, host: str, port: int, username: str | None
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        entry = await self._entry((host, port, username))
        async with entry.slots:
            entry.active += 1
            try:
                yield entry.conn
            finally:
                entry.active -= 1
                entry.last_used = time.monotonic()

    async def _entry(self, key: tuple[str, int, str | None]) -> _Entry:
        self._close_idle()
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._entries.get(key)
            if entry is None or entry.conn.is_closed():
                entry = self._entries[key] = _Entry(await self._connect(*key))
            return entry

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - self._settings.idle_close
        for key, entry in list(self._entries.items()):
            if entry.active == 0 and (entry.last_used < cutoff or entry.conn.is_closed()):
                del self._entries[key]
                entry.conn.close()

    async def checked_address(self, host: str, port: int) -> str:
        """The address to connect to for ``host``: the first one the address policy permits
        (resolved here, so the address checked is the address connected to)."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            return self._check(host, literal)
        self._policy.check_host_name(host)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise SshError(f"ssh host {host} cannot be resolved: {exc}") from None
        first_refusal: SsrfRefusedError | None = None
        for info in infos:
            try:
                return self._check(host, ipaddress.ip_address(info[4][0]))
            except SsrfRefusedError as exc:
                first_refusal = first_refusal or exc
        raise first_refusal or SshError(f"ssh host {host} has no address")

    def _check(self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        self._policy.check_address(host, ip)
        return str(ip)

    async def _connect(self, host: str, port: int, username: str | None) -> asyncssh.SSHClientConnection:
        address = await self.checked_address(host, port)
        probe = KnownHostsProbe(_known_hosts(self._settings), host)
        options: dict[str, Any] = {"username": username} if username else {}
        if self._settings.client_keys:
            options["client_keys"] = self._settings.client_keys
        try:
            return await asyncssh.connect(
                address, port, known_hosts=probe, connect_timeout=self._settings.connect_timeout,
                keepalive_interval=self._settings.keepalive, **options,
            )
        except asyncssh.HostKeyNotVerifiable:
            where = f"{host}:{port}"
            if probe.had_keys:
                raise HostKeyChangedError(
                    f"host key for {where} changed: the server's key does not match known_hosts "
                    "(possible man-in-the-middle); if the change is expected, update known_hosts"
                ) from None
            raise HostKeyUnknownError(
                f"host key for {where} is unknown: add it to the known_hosts file ([ssh].known_hosts)"
            ) from None
        except asyncssh.PermissionDenied:
            raise PermanentError(f"ssh authentication as {username or '(default user)'} "
                                 f"to {host}:{port} failed") from None
        except (OSError, asyncssh.Error) as exc:
            raise SshError(f"ssh connection to {host}:{port} failed: {exc}") from None

    async def aclose(self) -> None:
        """Close every connection and wait for them to finish closing."""
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.conn.close()
        await asyncio.gather(*(entry.conn.wait_closed() for entry in entries), return_exceptions=True)


def _known_hosts(settings: SshConfig) -> str | asyncssh.SSHKnownHosts:
    """The configured file, else ``~/.ssh/known_hosts``, else nothing known. Never None:
    there is no way to turn host-key checking off."""
    if settings.known_hosts:
        path = Path(settings.known_hosts).expanduser()
        if not path.is_file():
            raise PermanentError(f"[ssh].known_hosts file {path} does not exist")
        return str(path)
    default = Path("~/.ssh/known_hosts").expanduser()
    return str(default) if default.is_file() else asyncssh.import_known_hosts("")


class KnownHostsProbe:
    """Passed to asyncssh as ``known_hosts``: matches like the file would, and remembers
    whether the host had any trusted key, which tells "unknown" from "changed"."""

    def __init__(self, source: str | asyncssh.SSHKnownHosts, host: str | None = None) -> None:
        self._source = source
        self._host = host  # the name the job gave: we connect to its checked address instead
        self.had_keys = False

    def __call__(self, host: str, addr: str, port: int | None) -> Any:
        result = asyncssh.match_known_hosts(self._source, self._host or host, addr, port)
        self.had_keys = bool(result[0] or result[1])  # trusted host keys or CA keys
        return result


@asynccontextmanager
async def ssh_pool(config: Config) -> AsyncIterator[SshPool]:
    """The engine-wide SSH connection pool (a Resources factory)."""
    pool = SshPool(config.ssh)
    try:
        yield pool
    finally:
        await pool.aclose()
