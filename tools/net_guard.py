"""SSRF guard for URLs the model asks to fetch: which schemes, hosts and addresses may be read.

The model's URLs come from people and from pages it read, so any of them may point inside our
network. A URL is fetched only when its scheme is http(s), it names no credentials, and every
address its host resolves to is public (or the host is on the admin's allow-list). The caller
then connects to one of the vetted addresses itself — never lets the HTTP client resolve the name
again — so a DNS answer that changes between check and connect (rebinding) cannot reach inside.

Pure except `system_resolver`, which asks the OS resolver without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as text; raise OSError when it does not.
Resolver = Callable[[str, int], Awaitable[list[str]]]

SCHEMES = frozenset({"http", "https"})

# Cloud instance metadata services: credentials live there. Refused even for allow-listed hosts.
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data.ec2.internal"}
)
# Names that mean "this machine" whatever a resolver says.
LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class Blocked(Exception):
    """The URL must not be fetched. The message says why, in words the model can pass on."""


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted URL: where to connect (in order of preference) and what to call the host."""

    url: httpx.URL
    addresses: tuple[Address, ...]
    allow_listed: bool


def parse_url(raw: str) -> httpx.URL:
    """Parse an absolute http(s) URL; raise Blocked for anything else."""
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise Blocked(f"not a valid URL ({exc})") from None
    check_url(url)
    return url


def check_url(url: httpx.URL) -> None:
    """Refuse what no address check can make safe: other schemes, credentials, local names."""
    if url.scheme not in SCHEMES:
        scheme = url.scheme or "relative"
        raise Blocked(f"only http and https URLs can be read, not {scheme}")
    if not url.host:
        raise Blocked("the URL has no host")
    if url.userinfo:
        raise Blocked("URLs with a user name or password are not read")
    host = normal_host(url.raw_host.decode("ascii"))
    if host in METADATA_HOSTS:
        raise Blocked(f"{host} is a cloud metadata service")
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        raise Blocked(f"{host} is this machine (loopback)")


def normal_host(host: str) -> str:
    """Lower case, without the trailing dot of a fully qualified name."""
    return host.lower().rstrip(".")


def host_allowed(host: str, allow: Iterable[str]) -> bool:
    """Whether `host` is on the admin's allow-list: an exact name (or IP), or `*.example.com`
    for every name under example.com."""
    host = normal_host(host)
    for entry in allow:
        entry = normal_host(entry.strip())
        if not entry:
            continue
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def unwrap(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo), which is what it reaches;
    else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return embedded
    return address


def address_problem(address: Address) -> str | None:
    """Why an address must never be fetched, or None when it is a public one."""
    address = unwrap(address)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, words in checks:
        if getattr(address, attribute):
            return words
    if not address.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), documentation ranges
        return "not a public address"
    return None


def ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def vet(url: httpx.URL, *, resolver: Resolver, allow_hosts: Iterable[str]) -> Target:
    """Resolve `url`'s host and check every address; return where it may be fetched from.

    Raises Blocked when the URL or any address is refused (one bad address is enough: a name
    with both a public and a private address is a classic rebinding setup), or when the host
    does not resolve."""
    check_url(url)
    host = normal_host(url.raw_host.decode("ascii"))
    allowed = host_allowed(host, allow_hosts)
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            found = await resolver(host, url.port or (443 if url.scheme == "https" else 80))
        except OSError:
            raise Blocked(f"the host {host} could not be resolved") from None
        addresses = []
        for text in found:
            address = ip_literal(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
            if address is not None and address not in addresses:
                addresses.append(address)
        if not addresses:
            raise Blocked(f"the host {host} could not be resolved")
    for address in addresses:
        if unwrap(address) in METADATA_ADDRESSES:
            raise Blocked(f"{host} is a cloud metadata address")
        problem = None if allowed else address_problem(address)
        if problem:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise Blocked(f"{shown} is {problem}; only public web pages can be read")
    return Target(url=url, addresses=tuple(addresses), allow_listed=allowed)


async def system_resolver(host: str, port: int) -> list[str]:
    """The OS resolver (getaddrinfo in the loop's thread pool), TCP addresses in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
