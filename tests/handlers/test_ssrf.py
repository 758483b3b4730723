"""The SSRF guard: refused targets are never connected to, whatever route leads there."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError
from yarl import URL

from handlers.http import HttpArgs
from handlers.ssrf import AddressPolicy, GuardedResolver, SsrfRefusedError, classify


async def test_loopback_is_refused_without_an_allow_list(make_harness, http_peer) -> None:
    harness = make_harness()
    with pytest.raises(SsrfRefusedError, match="loopback"):
        await harness.run("http", {"url": http_peer.url("/echo")})
    assert http_peer.requests == []


async def test_a_host_name_is_checked_at_its_resolved_address(make_harness, http_peer) -> None:
    harness = make_harness()
    with pytest.raises(SsrfRefusedError, match=r"localhost \(127\.0\.0\.1\): a loopback address"):
        await harness.run("http", {"url": http_peer.url("/echo", host="localhost")})
    assert http_peer.requests == []


async def test_allow_by_host_name(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["localhost"]})
    result = await harness.run("http", {"url": http_peer.url("/echo", host="localhost")})
    assert result["status"] == 200


async def test_redirect_from_an_allowed_host_to_a_refused_one(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1"]})
    for target in (f"http://127.0.0.2:{http_peer.port}/echo", "http://169.254.169.254/latest/meta-data/",
                   "http://[::1]/", "http://0x7f.1/"):
        with pytest.raises(SsrfRefusedError):
            await harness.run("http", {"url": http_peer.url(f"/redirect?to={target}")})
    assert [r["path"].split("?")[0] for r in http_peer.requests] == ["/redirect"] * 4


async def test_redirect_to_a_file_url_is_refused(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1"]})
    with pytest.raises(SsrfRefusedError, match="scheme 'file'"):
        await harness.run("http", {"url": http_peer.url("/redirect?to=file:///etc/passwd")})


async def test_file_url_is_refused_at_enqueue_and_at_run_time(make_harness) -> None:
    with pytest.raises(ValidationError, match="http"):
        HttpArgs.model_validate({"url": "file:///etc/passwd"})
    with pytest.raises(SsrfRefusedError, match="scheme"):
        AddressPolicy().check_url(URL("file:///etc/passwd"))
    harness = make_harness()
    with pytest.raises(Exception, match="url: must be an absolute http"):
        await harness.run("http", {"url": "{{target}}"}, vars={"target": "file:///etc/passwd"})


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.1/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/",
    "http://127.1/",
])
async def test_internal_targets_are_refused(make_harness, url: str) -> None:
    with pytest.raises(SsrfRefusedError):
        await make_harness().run("http", {"url": url})


async def test_metadata_needs_an_explicit_address_allow(make_harness) -> None:
    policy = AddressPolicy.from_lists(allow=["metadata.internal", "*.internal"], deny=[])
    with pytest.raises(SsrfRefusedError, match="cloud metadata"):
        policy.check_address("metadata.internal", ipaddress.ip_address("169.254.169.254"))
    policy.check_address("db.internal", ipaddress.ip_address("10.1.2.3"))
    AddressPolicy.from_lists(allow=["169.254.169.254"], deny=[]).check_address(
        "x", ipaddress.ip_address("169.254.169.254"))


async def test_deny_wins_over_allow_and_over_public(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1/32"]})
    with pytest.raises(SsrfRefusedError, match="denied"):
        await harness.run("http", {"url": http_peer.url("/echo")})
    policy = AddressPolicy.from_lists(allow=[], deny=["*.evil.test", "8.8.8.0/24"])
    with pytest.raises(SsrfRefusedError, match="denied"):
        policy.check_address("a.evil.test", ipaddress.ip_address("93.184.216.34"))
    with pytest.raises(SsrfRefusedError, match="denied"):
        policy.check_address("dns.google", ipaddress.ip_address("8.8.8.8"))
    assert http_peer.requests == []


async def test_resolver_returns_only_permitted_addresses() -> None:
    # The connector connects only to what the resolver returns: this is what makes DNS
    # rebinding between a check and the connection impossible.
    with pytest.raises(SsrfRefusedError):
        await GuardedResolver(AddressPolicy()).resolve("localhost", 80)
    resolver = GuardedResolver(AddressPolicy.from_lists(allow=["127.0.0.1"], deny=[]))
    results = await resolver.resolve("localhost", 80, family=0)  # type: ignore[arg-type]
    assert {r["host"] for r in results} == {"127.0.0.1"}
    await resolver.close()


@pytest.mark.parametrize("address,reason", [
    ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("172.16.5.5", "private"),
    ("127.0.0.53", "loopback"), ("169.254.1.1", "link-local"), ("169.254.169.254", "cloud metadata"),
    ("100.100.100.100", "shared (CGNAT)"), ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"),
    ("240.0.0.1", "reserved|private"), ("::1", "loopback"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("fd00:ec2::254", "cloud metadata"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::7f00:1", "loopback"),
    ("2002:7f00:1::1", "loopback"), ("ff02::1", "multicast"), ("::", "unspecified"),
    ("8.8.8.8", None), ("93.184.216.34", None), ("2606:4700:4700::1111", None),
])
def test_classify(address: str, reason: str | None) -> None:
    found = classify(ipaddress.ip_address(address))
    # Python versions differ on 240.0.0.0/4 (reserved, and "private" before 3.12.4).
    assert found == reason if reason is None or "|" not in reason else found in reason.split("|")


@pytest.mark.parametrize("url", [
    "http://[::ffff:1.1.1.1]/",
    "http://[::ffff:101:101]/",
    "http://[64:ff9b::101:101]/",      # NAT64
    "http://[2002:101:101::1]/",       # 6to4
    "http://[::1.1.1.1]/",             # IPv4-compatible (deprecated)
    "http://1.1.1.1/",
])
def test_deny_matches_every_form_of_an_address(url: str) -> None:
    for deny in (["1.1.1.1"], ["1.1.1.0/24"], ["::ffff:1.1.1.1"], ["::ffff:1.1.1.0/120"]):
        policy = AddressPolicy.from_lists(allow=[], deny=deny)
        with pytest.raises(SsrfRefusedError, match=r"denied by \[http\].deny"):
            policy.check_url(URL(url))
    AddressPolicy.from_lists(allow=[], deny=["1.1.1.2"]).check_url(URL(url))  # a neighbour is not denied


async def test_a_denied_loopback_is_denied_in_its_mapped_form_too(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.0/8", "::ffff:127.0.0.0/104"], "deny": ["127.0.0.1"]})
    with pytest.raises(SsrfRefusedError, match="denied"):
        await harness.run("http", {"url": f"http://[::ffff:127.0.0.1]:{http_peer.port}/echo"})
    assert http_peer.requests == []


@pytest.mark.parametrize("allow", [["169.254.0.0/16"], ["0.0.0.0/0"], ["::/0", "0.0.0.0/0"], ["fd00:ec2::/32"]])
@pytest.mark.parametrize("address", ["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254"])
def test_allowing_a_range_does_not_open_a_metadata_address(allow: list[str], address: str) -> None:
    policy = AddressPolicy.from_lists(allow=allow, deny=[])
    with pytest.raises(SsrfRefusedError, match="cloud metadata"):
        policy.check_address("x", ipaddress.ip_address(address))


def test_a_range_still_opens_its_other_addresses_and_the_exact_address_opens_metadata() -> None:
    AddressPolicy.from_lists(allow=["169.254.0.0/16"], deny=[]).check_address("x", ipaddress.ip_address("169.254.1.1"))
    exact = AddressPolicy.from_lists(allow=["169.254.169.254/32"], deny=[])
    exact.check_address("x", ipaddress.ip_address("169.254.169.254"))
    exact.check_address("x", ipaddress.ip_address("::ffff:169.254.169.254"))
