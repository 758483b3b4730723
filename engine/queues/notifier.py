"""LISTEN/NOTIFY: wakes producers when jobs are inserted and relays operator controls
(pause, resume, scale, cancel) between nodes. Polling remains the backstop.

A watchdog proves the listening connection alive every ``check_interval``: it NOTIFYs a
channel of its own on that very connection and waits for the echo. A connection that
died, went silent (a half-open TCP path) or no longer delivers notifications (a
transaction pooler in front of Postgres) fails the probe and is replaced at once; the
engine then looks for work, since notifications may have been missed meanwhile. When
LISTEN cannot work at all, the notifier warns once and the engine relies on polling.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import anyio
import asyncpg
import structlog

from engine.core import backoff
from engine.db.faults import is_transient
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.notifier")

# Probes that got no echo on a connection that otherwise answers, in a row, before
# LISTEN is declared unusable (notifications are being lost, e.g. by a pooler).
SILENT_PROBES_LIMIT = 3
RECONNECT_CAP = 5.0
# While LISTEN is unusable, try it again this often (quietly).
UNAVAILABLE_RETRY = 60.0

State = Literal["connecting", "connected", "reconnecting", "unavailable"]


class ListenerSilent(Exception):
    """The probe's NOTIFY went through but never came back."""


class Notifier:
    """Keeps one LISTEN connection alive and dispatches what arrives.

    ``on_insert(queue)`` runs for every insert notification; ``on_control(message)``
    for control messages; ``on_reconnect()`` after the connection was (re-)established
    (a notification may have been missed, so everyone should look for work).

    Example::

        notifier = Notifier(store, on_insert=wake, on_control=apply, on_reconnect=wake_all)
        await notifier.run()          # until cancelled
        notifier.state                # "connected", "reconnecting" or "unavailable"
    """

    def __init__(self, store: JobStore, *, on_insert: Callable[[str], None],
                 on_control: Callable[[dict[str, Any]], None], on_reconnect: Callable[[], None],
                 check_interval: float = 5.0) -> None:
        self.store = store
        self.on_insert = on_insert
        self.on_control = on_control
        self.on_reconnect = on_reconnect
        self.check_interval = check_interval
        self.state: State = "connecting"
        self.connections = 0
        self._probe_channel = f"jobengine_probe_{uuid.uuid4().hex[:16]}"
        self._probe_token = ""
        self._echo = anyio.Event()
        self._lost = anyio.Event()
        self._nudge = anyio.Event()
        self._silent_probes = 0
        self._connected_at = 0.0

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def nudge(self) -> None:
        """The database answers again: reconnect now rather than after the backoff."""
        self._nudge.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with capped, jittered backoff."""
        failures = 0
        while True:
            try:
                await self._listen_once()
            except Exception as exc:  # a database fault must not end the listener
                # A connection that held for a while earns an immediate retry; one that keeps
                # dying as soon as it is made backs off like a failed connect.
                held = self.state == "connected" and time.monotonic() - self._connected_at >= self.check_interval
                failures = 1 if held else failures + 1
                self._failed(exc)
            if self.state != "unavailable":
                self.state = "reconnecting"
            await self._backoff(failures)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, ListenerSilent):
            self._silent_probes += 1
            if self._silent_probes >= SILENT_PROBES_LIMIT:
                self._give_up("notifications sent on the listening connection never arrive")
            else:
                log.warning("listener probe got no echo; reconnecting")
        elif isinstance(exc, asyncpg.FeatureNotSupportedError | asyncpg.InsufficientPrivilegeError):
            self._give_up(str(exc))
        elif self.state != "unavailable":
            level = log.warning if is_transient(exc) or isinstance(exc, ConnectionError) else log.error
            level("listener connection failed; reconnecting", error=str(exc) or type(exc).__name__)

    async def _backoff(self, failures: int) -> None:
        if self.state == "unavailable":
            delay = UNAVAILABLE_RETRY
        else:
            delay = backoff.jittered(failures, base=0.05, cap=RECONNECT_CAP) if failures > 1 else 0.0
        with anyio.move_on_after(delay):
            await self._nudge.wait()
        self._nudge = anyio.Event()

    def _give_up(self, reason: str) -> None:
        if self.state != "unavailable":
            log.warning("LISTEN/NOTIFY is not available (a transaction pooler?); relying on polling, so jobs "
                        "start up to poll_interval late, pause/scale reach other nodes at their next heartbeat, and "
                        "cancelling a job running on another node does not interrupt it",
                        reason=reason)
        self.state = "unavailable"

    async def _listen_once(self) -> None:
        """Connect, prove the connection with a probe, then watch it until it fails."""
        self._lost = anyio.Event()
        channels = [self.store.statements.insert_channel, self.store.statements.control_channel,
                    self._probe_channel]
        conn = await self.store.open_listener(channels, self._dispatch, on_lost=self._lost.set)
        try:
            await self._probe(conn)
            if self.state == "unavailable":
                log.info("LISTEN/NOTIFY works again")
            elif self.connections:
                log.info("listener reconnected")
            self.state = "connected"
            self._connected_at = time.monotonic()
            self._silent_probes = 0
            self.connections += 1
            self.on_reconnect()
            await self._watch(conn)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await conn.close(timeout=1)
                except Exception:  # already broken: make sure the socket goes
                    conn.terminate()

    async def _probe(self, conn: asyncpg.Connection) -> None:
        """NOTIFY our own channel on ``conn``; raise unless the echo arrives in time."""
        self._echo = anyio.Event()
        self._probe_token = f"{time.monotonic():.6f}"
        await self.store.ping_listener(conn, self._probe_channel, self._probe_token)
        with anyio.move_on_after(self.check_interval):
            await self._echo.wait()
        if not self._echo.is_set():
            raise ListenerSilent()

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return (by raising) when the connection is lost or stops answering."""
        while True:
            with anyio.move_on_after(self.check_interval):
                await self._lost.wait()
            if self._lost.is_set():
                raise ConnectionError("listener connection lost")
            with anyio.fail_after(self.check_interval * 2):  # the probe's own timeout, and then some
                await self._probe(conn)

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            self._handle(channel, payload)
        except Exception:  # a callback bug must not break the listener
            log.exception("notification handler failed", channel=channel)

    def _handle(self, channel: str, payload: str) -> None:
        if channel == self._probe_channel:
            if payload == self._probe_token:
                self._echo.set()
            return
        if channel == self.store.statements.insert_channel:
            self.on_insert(payload)
            return
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignored malformed control message", payload=payload[:200])
            return
        if isinstance(message, dict):
            self.on_control(message)
