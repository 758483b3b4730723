"""Who the client is behind a proxy, and how many failed logins it may have.

The client address is the TCP peer, unless the peer is one of ``dashboard.trusted_proxies``:
then it is the nearest address in ``X-Forwarded-For`` that is not itself a trusted proxy
(read right to left, since a client can put anything at the left). A header from any other
peer is ignored, so nobody can choose the address their failed logins count against.

Example::

    proxies = TrustedProxies(["10.0.0.0/8"])
    client = proxies.client_address(request)       # '203.0.113.7' behind the proxy
    throttle = LoginThrottle()
    if throttle.allowed(f"addr:{client}", f"user:{name}"): ...
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Sequence

from aiohttp import web

# Failed logins allowed per key (one client address, one account) in WINDOW seconds before 429.
MAX_FAILURES = 10
WINDOW = 60.0
# An account's failures count over a longer window: a slow guesser spreading over many
# addresses still meets this limit.
ACCOUNT_WINDOW = 300.0
MAX_KEYS = 10_000


class TrustedProxies:
    """The addresses whose forwarding headers are believed."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    def client_address(self, request: web.Request) -> str:
        peer = request.remote or "?"
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", [])
                for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer


class LoginThrottle:
    """Failed logins per key in a sliding window (per process: each node counts its own)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def allowed(self, *keys: str) -> bool:
        """False when any key has had MAX_FAILURES failures within its window."""
        now = time.monotonic()
        for key in keys:
            recent = self._failures.get(key)
            window = ACCOUNT_WINDOW if key.startswith("user:") else WINDOW
            while recent and recent[0] < now - window:
                recent.popleft()
            if recent and len(recent) >= MAX_FAILURES:
                return False
        return True

    def failed(self, *keys: str) -> None:
        if len(self._failures) > MAX_KEYS:  # bounded memory under a spray of addresses and names
            self._failures.clear()
        for key in keys:
            self._failures.setdefault(key, deque()).append(time.monotonic())
