"""The claims a node has on their way, so its rescue can tell a lost claim from a late one.

A claim whose answer never arrived (a timeout, a dropped connection) may still commit on the
server, leaving jobs executing under this node's name that it does not run: they must go
back. A claim still on its way looks the same to the rescue until its answer arrives, and
rescuing those would run a job twice at once. Without knowing which claims are on their way,
the rescue can only wait for a claimed job to be older than any answer can take (the claim
grace, seconds). With this gate the rescue holds new claims back for the moment it runs, once
those in flight have answered, and may then take every unknown job at once.

Example::

    gate = ClaimGate()
    async with gate.claiming():          # producer: claim, then register what it got
        jobs = await store.fetch(...)
        running.update(...)
    async with gate.quiet(wait=0.5) as quiet:   # lifeline: no claim in flight if quiet
        await store.rescue_orphaned(..., claim_grace=0.0 if quiet else grace)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class ClaimGate:
    """Counts the claims in flight on one node; :meth:`quiet` holds new ones back."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._closed = False
        self._changed = anyio.Event()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @asynccontextmanager
    async def claiming(self) -> AsyncIterator[None]:
        """Around a claim and the registration of what it claimed (the jobs must be known
        to the node before the claim counts as answered)."""
        while self._closed:
            await self._changed.wait()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._signal()

    @asynccontextmanager
    async def quiet(self, wait: float) -> AsyncIterator[bool]:
        """Hold new claims back while the block runs. Yields True when every claim in flight
        answered within ``wait`` seconds, False otherwise: claims then go on at once and the
        caller must allow for some on their way. One quiet block at a time; a nested one
        yields False."""
        if self._closed:
            yield False
            return
        self._closed = True
        try:
            with anyio.move_on_after(wait):
                while self._in_flight:
                    await self._changed.wait()
            quiet = self._in_flight == 0
            if not quiet:
                self._closed = False
                self._signal()
            yield quiet
        finally:
            self._closed = False
            self._signal()
