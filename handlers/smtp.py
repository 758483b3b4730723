"""SMTP connections kept open and reused across ``mail`` jobs (a Resources factory).

Opening a session costs a TCP connect, the greeting, EHLO, often a TLS handshake and a login:
more than sending a small message over a session already open. The pool keeps sessions that
finished a message cleanly and hands them to the next mail:

- a session serves one message at a time, so there are never more sessions than mails being
  sent at once (the queues' concurrency);
- a reused session is probed with RSET first (as Postfix's connection cache does): a session
  the server has closed in the meantime is dropped before any of the message is sent;
- a session that fails while a message is on it (the connection is lost, a timeout, a 421
  "closing") is dropped and the message is sent once more on a fresh session; a 4xx/5xx reply
  to the message itself is the message's error and the session stays in the pool;
- a session idle for ``[smtp].idle_close`` is closed with QUIT, and all are at engine stop.

The password is read from the environment (``[smtp].password_env``) when a session is opened;
it is handed to aiosmtplib and nowhere else.

Example::

    pool = await ctx.resources.get(smtp_pool)
    refused = await pool.send(flat_message, "ops@example.com", ["user@example.com"])

``flat_message`` is the message as bytes (handlers/mail.py's ``flatten``), handed to
aiosmtplib's ``sendmail`` as it is: aiosmtplib's ``send_message`` would flatten the message
object once more, for each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiosmtplib

from engine.core.config import Config, SmtpConfig
from engine.core.outcomes import PermanentError

QUIT_TIMEOUT = 5.0
# "Service not available, closing transmission channel": the session's end, not the message's.
CLOSING = 421


class SmtpSessionLost(Exception):
    """The session failed under a message (connection lost, timeout, 421): the message's
    fate is unknown, and a fresh session may send it again."""


@dataclass(slots=True)
class _Idle:
    client: aiosmtplib.SMTP
    since: float


class SmtpPool:
    """Open SMTP sessions to ``[smtp].host``, one message at a time each.

    Example::

        async with smtp_pool(config) as pool:
            refused = await pool.send(flat_message, sender, recipients)   # {} when all accepted
    """

    def __init__(self, settings: SmtpConfig) -> None:
        self.settings = settings
        self._idle: list[_Idle] = []  # oldest first; the newest is reused first
        self._open: set[aiosmtplib.SMTP] = set()
        self._local_hostname: str | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    async def send(self, message: bytes, sender: str, recipients: list[str]) -> dict[str, tuple[int, str]]:
        """Send one flattened message; returns the refused recipients (code and reply) when some were
        accepted. Raises aiosmtplib's errors for replies to the message, and for a session
        that could not be opened; a session lost under the message is retried once."""
        try:
            return await self._send_once(message, sender, recipients)
        except SmtpSessionLost:
            return await self._send_once(message, sender, recipients, reuse=False)

    async def _send_once(self, message: bytes, sender: str, recipients: list[str], *,
                         reuse: bool = True) -> dict[str, tuple[int, str]]:
        # As send_message would: a non-ASCII address needs the server's SMTPUTF8. The message
        # itself is 7-bit (handlers/mail.py), so it needs no BODY=8BITMIME.
        options = [] if sender.isascii() and all(r.isascii() for r in recipients) else ["SMTPUTF8"]
        client = (await self._reused() if reuse else None) or await self._connect()
        try:
            refused, _reply = await client.sendmail(sender, recipients, message, mail_options=options)
        except BaseException as exc:
            lost = _session_lost(exc)
            if lost or not client.is_connected or not isinstance(exc, aiosmtplib.SMTPException):
                self._discard(client)  # a cancellation mid-message leaves the session unusable too
            else:
                self._release(client)  # aiosmtplib sent RSET after the refusal
            if lost and isinstance(exc, Exception):
                raise SmtpSessionLost(str(exc)) from exc
            raise
        self._release(client)
        return {addr: (response.code, response.message) for addr, response in refused.items()}

    async def _reused(self) -> aiosmtplib.SMTP | None:
        """The newest idle session that answers RSET, or None."""
        while self._idle:
            client = self._idle.pop().client
            try:
                await client.rset(timeout=self.settings.timeout)
            except BaseException as exc:
                self._discard(client)
                if isinstance(exc, aiosmtplib.SMTPException | OSError):
                    continue  # the server closed it meanwhile: nothing of the message was sent
                raise
            return client
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._closed:
            raise aiosmtplib.SMTPServerDisconnected("the engine is stopping; no new SMTP session")
        settings = self.settings
        start_tls = start_tls_setting(settings)
        if self._local_hostname is None:  # aiosmtplib would look it up for every session
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=settings.host, port=settings.port, username=settings.username, password=password(settings),
            local_hostname=self._local_hostname, use_tls=settings.use_tls, start_tls=start_tls,
            validate_certs=settings.validate_certs, cert_bundle=settings.ca_file, timeout=settings.timeout,
        )
        await client.connect()  # EHLO, STARTTLS and the login as configured
        self._open.add(client)
        return client

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if self._closed or not client.is_connected:
            self._discard(client)
            return
        self._idle.append(_Idle(client, time.monotonic()))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    def _discard(self, client: aiosmtplib.SMTP) -> None:
        self._open.discard(client)
        client.close()

    async def _reap(self) -> None:
        """Close sessions idle for ``idle_close``; ends when none is idle."""
        while self._idle:
            due = self._idle[0].since + self.settings.idle_close
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            cutoff = time.monotonic() - self.settings.idle_close
            stale = [entry for entry in self._idle if entry.since <= cutoff]
            self._idle = [entry for entry in self._idle if entry.since > cutoff]
            await asyncio.gather(*(self._quit(entry.client) for entry in stale))

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit(timeout=QUIT_TIMEOUT)
        self._discard(client)

    async def aclose(self) -> None:
        """QUIT the idle sessions and close the rest (the engine is stopping)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(entry.client) for entry in idle))
        for client in list(self._open):
            self._discard(client)


def _session_lost(exc: BaseException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == CLOSING
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | OSError)


def start_tls_setting(smtp: SmtpConfig) -> bool | None:
    """STARTTLS as configured, but required (never "if offered") when a password will be
    sent, unless ``allow_plaintext_auth``; a plain connection with a login is refused."""
    if smtp.username is None or smtp.use_tls or smtp.allow_plaintext_auth:
        return smtp.start_tls
    if smtp.start_tls is False:
        raise PermanentError(
            "[smtp].username is set but the connection is not TLS (start_tls = false, use_tls = false): "
            "the password would travel in clear; enable TLS or set allow_plaintext_auth = true"
        )
    return True


def password(smtp: SmtpConfig) -> str | None:
    """The SMTP password from the environment variable ``[smtp].password_env`` names."""
    if smtp.username is None:
        return None
    if not smtp.password_env:
        raise PermanentError("[smtp].username is set but [smtp].password_env is not")
    value = os.environ.get(smtp.password_env)
    if value is None:
        raise PermanentError(f"SMTP password: environment variable {smtp.password_env} is not set")
    return value


@asynccontextmanager
async def smtp_pool(config: Config) -> AsyncIterator[SmtpPool]:
    """The engine-wide SMTP session pool (a Resources factory)."""
    pool = SmtpPool(config.smtp)
    try:
        yield pool
    finally:
        await pool.aclose()
