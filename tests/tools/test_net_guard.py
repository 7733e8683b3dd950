"""tools/net_guard.py: table tests of the SSRF rules."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from tests.tools.conftest import FakeDNS
from tools.net_guard import (
    Blocked,
    address_problem,
    host_allowed,
    parse_url,
    system_resolver,
    unwrap,
    vet,
)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("2606:4700::6810:85e5", None),
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("::1", "a loopback address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("10.1.2.3", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.0.10", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.10.20", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a private address"),  # reserved; Python files it under private too
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("192.0.2.1", "a private address"),  # documentation range
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("2002:7f00:1::", "a loopback address"),  # 6to4 carrying 127.0.0.1
        ("2002:0a00:0001::", "a private address"),  # 6to4 carrying 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "a loopback address"),  # Teredo to 127.0.0.1
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_unwrap_leaves_plain_addresses() -> None:
    plain = ipaddress.ip_address("2606:4700::1")
    assert unwrap(plain) is plain


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/a?b=1", None),
        ("http://example.com:8080/", None),
        ("HTTP://Example.COM/", None),
        ("file:///etc/passwd", "only http and https URLs can be read, not file"),
        ("gopher://example.com/", "not gopher"),
        ("ftp://example.com/", "not ftp"),
        ("javascript:alert(1)", "not javascript"),
        ("example.com/page", "not relative"),
        ("//example.com/page", "not relative"),
        ("http:///path", "the URL has no host"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://localhost/", "localhost is this machine"),
        ("http://LocalHost./", "localhost is this machine"),
        ("http://x.localhost/", "x.localhost is this machine"),
        ("http://metadata.google.internal/", "cloud metadata service"),
        ("http://METADATA/", "cloud metadata service"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_parse_url(url: str, reason: str | None) -> None:
    if reason is None:
        assert parse_url(url).scheme in ("http", "https")
    else:
        with pytest.raises(Blocked, match=None) as caught:
            parse_url(url)
        assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("host", "allow", "expected"),
    [
        ("docs.corp", ["docs.corp"], True),
        ("DOCS.corp.", ["docs.corp"], True),
        ("docs.corp", [" Docs.Corp "], True),
        ("wiki.docs.corp", ["docs.corp"], False),
        ("wiki.docs.corp", ["*.docs.corp"], True),
        ("a.b.docs.corp", ["*.docs.corp"], True),
        ("docs.corp", ["*.docs.corp"], False),
        ("evildocs.corp", ["*.docs.corp"], False),
        ("10.0.0.5", ["10.0.0.5"], True),
        ("10.0.0.6", ["10.0.0.5"], False),
        ("docs.corp", [], False),
        ("docs.corp", [""], False),
    ],
)
def test_host_allowed(host: str, allow: list[str], expected: bool) -> None:
    assert host_allowed(host, allow) is expected


async def test_vet_returns_the_addresses_to_connect_to() -> None:
    dns = FakeDNS({"example.com": ["93.184.215.14", "2606:2800::1", "93.184.215.14"]})
    target = await vet(httpx.URL("https://example.com/x"), resolver=dns, allow_hosts=[])
    assert [str(a) for a in target.addresses] == ["93.184.215.14", "2606:2800::1"]
    assert not target.allow_listed and dns.asked == ["example.com"]


async def test_vet_ip_literal_is_not_looked_up() -> None:
    dns = FakeDNS()
    target = await vet(httpx.URL("http://93.184.215.14/"), resolver=dns, allow_hosts=[])
    assert [str(a) for a in target.addresses] == ["93.184.215.14"] and dns.asked == []


async def test_vet_allow_list_admits_private_but_never_metadata() -> None:
    dns = FakeDNS({"docs.corp": ["10.0.0.5"], "meta.corp": ["169.254.169.254"]})
    target = await vet(
        httpx.URL("http://docs.corp/"), resolver=dns, allow_hosts=["*.corp", "docs.corp"]
    )
    assert target.allow_listed and [str(a) for a in target.addresses] == ["10.0.0.5"]
    with pytest.raises(Blocked, match="metadata"):
        await vet(httpx.URL("http://meta.corp/"), resolver=dns, allow_hosts=["*.corp"])


async def test_vet_drops_ipv6_zone_and_ignores_junk() -> None:
    dns = FakeDNS({"a.test": ["fe80::1%eth0"], "b.test": ["not-an-ip"]})
    with pytest.raises(Blocked, match="a link-local address"):
        await vet(httpx.URL("http://a.test/"), resolver=dns, allow_hosts=[])
    with pytest.raises(Blocked, match="could not be resolved"):
        await vet(httpx.URL("http://b.test/"), resolver=dns, allow_hosts=[])


async def test_system_resolver_reads_numeric_hosts_without_dns() -> None:
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
    assert "127.0.0.1" in await system_resolver("2130706433", 80)
