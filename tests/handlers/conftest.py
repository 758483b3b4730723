"""Real peers for the built-in handlers (an aiosmtpd server, an aiohttp server, an asyncssh
server running commands through /bin/sh) and a harness that runs a handler the way the
executor does: validate at enqueue, render, validate again, call with a HandlerContext."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import itertools
import json
import os
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import pytest_asyncio
import structlog
import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope
from pydantic import ValidationError

from engine.core.attempt_log import AttemptLog
from engine.core.config import Config, build_config
from engine.core.context import HandlerContext, Resources
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.registry import RENDERED_CONTEXT, Registry
from engine.core.secrets import Secrets
from engine.core.templating import build_scope, render
from handlers.args import describe_validation_error
from handlers.builtin import register_builtin

REPO = Path(__file__).resolve().parents[2]
_job_ids = itertools.count(1000)


# --- harness --------------------------------------------------------------------------------


@dataclass
class Harness:
    """Runs built-in handlers against a Config, like the executor would."""

    config: Config
    secrets: Secrets
    registry: Registry = field(default_factory=Registry)
    log_buffer: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        register_builtin(self.registry)
        self.resources = Resources(self.config)
        self.logger = structlog.wrap_logger(
            structlog.PrintLogger(file=self.log_buffer),
            processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        )

    def enqueue_check(self, kind: str, args: dict[str, Any]) -> None:
        """What the inserter does: validate args, placeholders and all."""
        model = self.registry.get(kind).args_model
        assert model is not None
        model.model_validate(args)

    async def run(self, kind: str, args: dict[str, Any], *, vars: dict[str, Any] | None = None,
                  job_id: int | None = None) -> Any:
        spec = self.registry.get(kind)
        self.enqueue_check(kind, args)
        job = Job(id=job_id or next(_job_ids), queue=spec.queue, kind=kind, args=args, attempt=1,
                  max_attempts=spec.max_attempts, meta={"vars": vars or {}})
        scope = build_scope(job, self.secrets)
        job_args: Any = args
        if spec.render_args:
            try:
                job_args = spec.args_model.model_validate(  # type: ignore[union-attr]
                    render(args, scope), context=RENDERED_CONTEXT)
            except ValidationError as exc:  # the executor discards such a job
                raise PermanentError(describe_validation_error(exc, kind=kind)) from None
        # The attempt log the executor would hand it (lines a test reads with attempt_lines()).
        self.attempt_log = AttemptLog(job.id, job.attempt, self.secrets)
        ctx = HandlerContext(self.config, self.resources, self.secrets, self.logger, scope,
                             attempt_log=self.attempt_log)
        return await spec.func(replace(job, args=job_args), ctx)

    def attempt_lines(self) -> list[str]:
        """The last run's attempt log lines, without their time stamps."""
        return [line.split(" ", 1)[1] for line in self.attempt_log.pending]

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_buffer.getvalue().splitlines()]


@pytest_asyncio.fixture
async def make_harness() -> AsyncIterator[Callable[..., Harness]]:
    """``make_harness(smtp={...}, http={...}, secrets={"NAME": "value"})``."""
    made: list[Harness] = []

    def make(secrets: dict[str, str] | None = None, secret_scopes: dict[str, Any] | None = None,
             **settings: Any) -> Harness:
        settings.setdefault("base_dir", REPO / "config")
        settings["secrets"] = {name: (secret_scopes or {}).get(name, {}) for name in sorted(secrets or {})}
        config = build_config(settings)
        harness = Harness(config, Secrets(secrets or {}, scopes=config.secrets))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.resources.aclose()


# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class SmtpPeer:
    port: int
    messages: list[Envelope]
    logins: list[tuple[str, str]]
    ca_file: str | None = None
    sessions: int = 0  # connections accepted
    connections: list[SMTP] = field(default_factory=list)  # the server side of each
    closed: int = 0    # connections ended (by either side)
    quits: int = 0
    data_seen: int = 0
    # The Nth DATA (1-based, counted over all sessions) at which the server drops the
    # connection after reading the message and before replying, keeping nothing.
    drop_at_data: set[int] = field(default_factory=set)

    def parsed(self, index: int = 0) -> EmailMessage:
        content = self.messages[index].content
        assert isinstance(content, bytes)
        # Normalise the wire's CRLF so tests compare text as written.
        content = content.replace(b"\r\n", b"\n")
        return email.message_from_bytes(content, policy=email.policy.default)  # type: ignore[return-value]


class _Store:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.peer.data_seen += 1
        if self.peer.data_seen in self.peer.drop_at_data:
            server.transport.abort()
            return "250 OK"  # written to a closed transport: the client never sees it
        self.peer.messages.append(envelope)
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.peer.quits += 1
        return "221 Bye"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        # Addresses at these domains are refused, so tests can see both kinds of reply.
        if address.endswith("@refused.test"):
            return "550 5.1.1 no such user"
        if address.endswith("@busy.test"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def _smtp_server(**smtp_options: Any) -> tuple[asyncio.Server, SmtpPeer]:
    peer = SmtpPeer(port=0, messages=[], logins=[])

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        login, password = data.login.decode(), data.password.decode()
        peer.logins.append((login, password))
        return AuthResult(success=(login, password) == ("ops", "smtp-pass-123"))

    class CountingSMTP(SMTP):
        def connection_made(self, transport: Any) -> None:
            if self not in peer.connections:  # STARTTLS calls it again for the same session
                peer.sessions += 1
                peer.connections.append(self)
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            peer.closed += 1
            super().connection_lost(error)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(_Store(peer), hostname="mx.test", authenticator=authenticate, **smtp_options),
        "127.0.0.1", 0,
    )
    peer.port = server.sockets[0].getsockname()[1]
    return server, peer


@pytest_asyncio.fixture
async def smtp_peer() -> AsyncIterator[SmtpPeer]:
    """A plain SMTP server on the test's loop."""
    server, peer = await _smtp_server(auth_require_tls=False)
    yield peer
    server.close()
    await server.wait_closed()


@pytest_asyncio.fixture
async def smtp_tls_peer(tmp_path: Path) -> AsyncIterator[SmtpPeer]:
    """An SMTP server that requires STARTTLS, with a certificate from a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server, peer = await _smtp_server(tls_context=server_ctx, require_starttls=True)
    peer.ca_file = str(ca_file)
    yield peer
    server.close()
    await server.wait_closed()


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpPeer:
    port: int
    requests: list[dict[str, Any]]
    hung: asyncio.Event

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _HttpRoutes:
    """The test server's endpoints; every request is recorded in ``peer.requests``."""

    def __init__(self, peer: HttpPeer) -> None:
        self.peer = peer

    async def record(self, request: web.Request) -> dict[str, Any]:
        body = await request.read()
        seen = {"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace")}
        self.peer.requests.append(seen)
        return seen

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response(await self.record(request))

    async def status(self, request: web.Request) -> web.Response:
        await self.record(request)
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), text="status page", headers=headers)

    async def text(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(text="plain ☃ text", headers={"X-Request-Id": "req-1", "Set-Cookie": "a=b"})

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 200_000, content_type="application/octet-stream")

    async def hang(self, request: web.Request) -> web.Response:
        await self.record(request)
        try:
            await asyncio.Event().wait()  # until the client gives up and the task is cancelled
        finally:
            self.peer.hung.set()
        raise AssertionError("unreachable")

    async def redirect(self, request: web.Request) -> web.Response:
        await self.record(request)
        code = int(request.query.get("code", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_route("*", "/status/{code}", self.status)
        app.router.add_get("/text", self.text)
        app.router.add_get("/big", self.big)
        app.router.add_get("/hang", self.hang)
        app.router.add_route("*", "/redirect", self.redirect)
        return app


@pytest_asyncio.fixture
async def http_peer() -> AsyncIterator[HttpPeer]:
    """An aiohttp server on 127.0.0.1 (a free port) that records every request."""
    peer = HttpPeer(port=0, requests=[], hung=asyncio.Event())
    runner = web.AppRunner(_HttpRoutes(peer).app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peer.port = runner.addresses[0][1]
    yield peer
    await runner.cleanup()


# --- SSH --------------------------------------------------------------------------------------


@dataclass
class SshPeer:
    port: int
    host_key: asyncssh.SSHKey
    client_key_file: str
    known_hosts_file: str
    connections: list[asyncssh.SSHServerConnection]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        # The peer is on loopback, which the ssh address policy refuses unless allowed.
        return {"known_hosts": self.known_hosts_file, "client_keys": [self.client_key_file],
                "allow": ["127.0.0.1"], **overrides}


async def _run_through_shell(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """ENVIRONMENT.md's tested recipe: /bin/sh -c in its own process group, output pumped
    before the exit status, the group killed when the client closes the channel."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", process.command or "exit 0", start_new_session=True,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await process.redirect(stdin=proc.stdin)

    async def pump(src: asyncio.StreamReader, dst: Any) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()

    assert proc.stdout is not None and proc.stderr is not None
    work: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(
        pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr), proc.wait()))
    closed: asyncio.Future[Any] = asyncio.ensure_future(process.wait_closed())
    await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.gather(work, return_exceptions=True)
        return
    closed.cancel()
    rc = proc.returncode
    assert rc is not None
    if rc >= 0:
        process.exit(rc)
    else:
        process.exit_with_signal(signal.Signals(-rc).name[3:])
    await process.wait_closed()


@pytest_asyncio.fixture
async def ssh_peer(tmp_path: Path) -> AsyncIterator[SshPeer]:
    """An asyncssh server on a free port; its host key is in ``known_hosts_file``."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_file = tmp_path / "id_client"
    client_key.write_private_key(str(client_key_file))
    connections: list[asyncssh.SSHServerConnection] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            connections.append(conn)

    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
        process_factory=_run_through_shell, encoding=None)
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    yield SshPeer(port, host_key, str(client_key_file), str(known_hosts), connections)
    server.close()
    await server.wait_closed()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A path that an injected command would create; it must never exist."""
    return tmp_path / "injected-marker"
