"""The SSRF guard of the ``http`` handler: which addresses a job may make the engine connect to.

Private, loopback, link-local, multicast, reserved, unspecified, CGNAT and cloud-metadata
addresses are refused unless ``[http].allow`` lists them (a CIDR or an IP) or the host name
(``api.internal``, ``*.internal``); ``[http].deny`` entries are refused always. Metadata
addresses (169.254.169.254, fd00:ec2::254, ...) pass only when allow-listed by their own
address: a CIDR that contains one does not open it.

Addresses and list entries are normalised before matching: an IPv6 form of an IPv4 address
(``::ffff:1.1.1.1``, NAT64, 6to4, Teredo) matches as that IPv4 address, and a zone
(``%eth0``) is dropped, so ``deny = ["1.1.1.1"]`` also refuses ``[::ffff:1.1.1.1]``.

Host names are checked where they are resolved, inside the connector's resolver
(:class:`GuardedResolver`), so the address checked is the address connected to: a DNS
answer that changes between a check and the connection (rebinding) cannot get through.
IP literals never reach a resolver in aiohttp, so :meth:`AddressPolicy.check_url` checks
them before each request.

Example::

    policy = AddressPolicy.from_lists(allow=["10.0.0.0/8"], deny=[])
    policy.check_address("db", ip_address("10.1.2.3"))       # allowed
    policy.check_address("x", ip_address("127.0.0.1"))       # raises SsrfRefusedError
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from engine.core.outcomes import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = frozenset({"http", "https"})
METADATA = frozenset(ipaddress.ip_address(address) for address in (
    "169.254.169.254",   # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "fd00:ec2::254",     # AWS over IPv6
    "169.254.170.2",     # AWS ECS task metadata and credentials
    "100.100.100.200",   # Alibaba Cloud
))
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$", re.IGNORECASE)


class SsrfRefusedError(PermanentError):
    """The target is not one the engine may connect to; retrying cannot help."""


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``, ...), or None."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return classify(embedded)
    if ip in METADATA:
        return "cloud metadata"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (CGNAT)", ip.version == 4 and ip in CGNAT),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", ip.version == 6 and ip.is_site_local),
        ("non-global", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def normalize(ip: IPAddress) -> IPAddress:
    """The address ``ip`` stands for: an IPv4 address written as IPv6 becomes that IPv4
    address, and an IPv6 zone (``%eth0``) is dropped.

    Example::

        normalize(ip_address("::ffff:1.1.1.1"))   # IPv4Address('1.1.1.1')
    """
    if ip.version == 4:
        return ip
    plain = ipaddress.IPv6Address(int(ip))  # without the scope id
    return _embedded_ipv4(plain) or plain


def _normalize_network(net: IPNetwork) -> IPNetwork:
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
        assert isinstance(net.network_address, ipaddress.IPv6Address)
        mapped = net.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, IPv4-compatible, NAT64, 6to4,
    Teredo), if any."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if 1 < int(ip) < 2**32:  # ::1.2.3.4, the deprecated IPv4-compatible form (:: and ::1 excepted)
        return ipaddress.IPv4Address(int(ip))
    return None


def _host_matches(host: str, pattern: str) -> bool:
    host, pattern = host.rstrip(".").lower(), pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The allow and deny lists of ``[http]``, parsed once."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    section: str = "http"  # the config section named in refusals

    @classmethod
    def from_lists(cls, allow: Iterable[str], deny: Iterable[str], section: str = "http") -> AddressPolicy:
        """Entries are CIDRs, IPs or host names (``*.example.com`` matches subdomains)."""
        allow_nets, allow_hosts = _split(allow)
        deny_nets, deny_hosts = _split(deny)
        return cls(allow_nets, allow_hosts, deny_nets, deny_hosts, section)

    def check_host_name(self, host: str) -> None:
        """Refuse a host named in ``[http].deny`` before it is even resolved."""
        if any(_host_matches(host, pattern) for pattern in self.deny_hosts):
            raise SsrfRefusedError(f"host {host} is denied by [{self.section}].deny")

    def check_address(self, host: str, ip: IPAddress) -> None:
        """Refuse connecting to ``ip`` (the address of ``host``) unless policy permits it."""
        self.check_host_name(host)
        forms = {ip if ip.version == 4 else ipaddress.IPv6Address(int(ip)), normalize(ip)}
        if any(form in net for form in forms for net in self.deny_networks if form.version == net.version):
            raise SsrfRefusedError(f"address {ip} of {host} is denied by [{self.section}].deny")
        reason = classify(ip)
        if reason == "cloud metadata":
            # Only the address itself opens it: a range someone allowed for its neighbours must not.
            if any(net.num_addresses == 1 and net.network_address in forms for net in self.allow_networks):
                return
        elif any(form in net for form in forms for net in self.allow_networks if form.version == net.version):
            return
        if reason is None:
            return
        if reason != "cloud metadata" and any(_host_matches(host, p) for p in self.allow_hosts):
            return
        raise SsrfRefusedError(
            f"refused to connect to {host} ({ip}): a {reason} address; "
            f"list it in [{self.section}].allow to permit it"
        )

    def check_url(self, url: URL) -> None:
        """Scheme and host checks done before each request (and each redirect hop)."""
        if url.scheme not in SCHEMES:
            raise SsrfRefusedError(f"URL scheme {url.scheme or '(none)'!r} is not allowed: use http or https")
        host = url.raw_host
        if not host:
            raise SsrfRefusedError("URL has no host")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if NUMERIC_HOST.match(host):
                # 2130706433, 0x7f.1, 127.1: resolvers read these as IPv4 addresses.
                raise SsrfRefusedError(f"host {host} is not a canonical IP address or a name") from None
            self.check_host_name(host)  # names are checked again, with their addresses, on resolve
            return
        self.check_address(host, ip)


def _split(entries: Iterable[str]) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for entry in entries:
        try:
            networks.append(_normalize_network(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            hosts.append(entry.strip().lower())
    return tuple(networks), tuple(hosts)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only the addresses the policy permits, so the
    connector can only ever connect to checked addresses.

    Example::

        connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()  # loop.getaddrinfo

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self._policy.check_host_name(host)
        results = await self._inner.resolve(host, port, family)
        permitted: list[ResolveResult] = []
        first_refusal: SsrfRefusedError | None = None
        for result in results:
            try:
                self._policy.check_address(host, ipaddress.ip_address(result["host"]))
            except SsrfRefusedError as exc:
                first_refusal = first_refusal or exc
                continue
            permitted.append(result)
        if not permitted:
            raise first_refusal or SsrfRefusedError(f"host {host} has no address")
        return permitted

    async def close(self) -> None:
        await self._inner.close()
