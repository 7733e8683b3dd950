"""fetch_url: read one web page the model points at, as Markdown, without reaching inside.

How a fetch stays SSRF-safe (tools/net_guard.py does the checks):
- Each hop's URL is vetted: http(s) only, no credentials, no local or metadata names, and every
  address the host resolves to must be public (unless the host is on FETCH_ALLOW_HOSTS).
- The request then goes to a vetted *address*, not the name: the URL's host is replaced by the
  IP, and the real name travels in the Host header and, for https, as the TLS server name
  (httpx's `sni_hostname` request extension; the certificate is checked against that name).
  So a resolver that answers differently a second time (DNS rebinding) changes nothing: there is
  no second lookup. This is the simplest correct pinning httpx allows — no custom transport.
- Redirects are not followed by httpx; each Location is vetted the same way before the next hop.
- Each hop uses a fresh client with `trust_env=False`: no proxy from the environment (a proxy
  would do its own lookup), and no pooled connection is reused for another host name.
- The body is streamed and reading stops at FETCH_MAX_BYTES; FETCH_TIMEOUT bounds all hops
  together; only HTML, JSON and plain text are read.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, Field

from bot.config import Settings
from bot.contracts.tool import Tool, ToolContext, ToolFailure
from tools import page_text
from tools.net_guard import Blocked, Resolver, Target, ip_literal, parse_url, system_resolver, vet

NAME = "fetch_url"
DESCRIPTION = (
    "Read a public web page and get its text as Markdown (JSON and plain text come back as "
    "they are). Use it for a link the user gave, or to read a search result in full. Only "
    "public http(s) addresses can be read; very long pages are cut."
)
USER_AGENT = "deepseek-slack/0.1 (fetch_url)"
ACCEPT = "text/html,application/xhtml+xml,application/json;q=0.9,text/plain;q=0.8"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Addresses of one host tried in turn when a connection is refused (e.g. IPv6 without a route).
MAX_ADDRESSES_TRIED = 3


class FetchArgs(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="The http(s) URL to read.")


@dataclass(frozen=True, slots=True)
class Page:
    url: str  # after redirects
    kind: page_text.Kind
    body: bytes
    charset: str | None
    truncated: bool


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context (certifi's CAs) for every fetch: building one costs ~0.1 s."""
    return httpx.create_ssl_context()


def fetch_url_tool(
    *, resolver: Resolver = system_resolver, verify: ssl.SSLContext | None = None
) -> Tool[FetchArgs]:
    """The tool. `resolver` and `verify` are for tests: a resolver that maps test names to
    127.0.0.1, and a context trusting a test CA."""

    async def run(args: FetchArgs, ctx: ToolContext) -> str:
        page = await fetch(
            args.url, ctx.settings, resolver=resolver, verify=verify or default_ssl_context()
        )
        text = page_text.decode(page.body, page.charset, page.kind)
        title = ""
        if page.kind == "html":
            title = page_text.html_title(text)
            # html2text is pure Python: keep a big page from stalling every other answer.
            text = await asyncio.to_thread(page_text.html_to_markdown, text, page.url)
        return page_text.render_page(
            url=page.url,
            kind=page.kind,
            text=text,
            title=title,
            cut_at=len(page.body) if page.truncated else None,
        )

    return Tool(
        name=NAME,
        description=DESCRIPTION,
        args=FetchArgs,
        run=run,
        label=lambda a: f"Reading {page_text.short_url(a.url)}",
    )


async def fetch(
    raw_url: str, settings: Settings, *, resolver: Resolver, verify: ssl.SSLContext
) -> Page:
    """GET `raw_url`, following redirects, every hop vetted; raise ToolFailure on refusal,
    network failure, HTTP error status or an unread content type."""
    try:
        url = parse_url(raw_url)
    except Blocked as exc:
        raise ToolFailure(f"Refused {raw_url}: {exc}.") from None
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            return await _follow(url, settings, resolver, verify)
    except TimeoutError:
        raise ToolFailure(
            f"{url} did not answer within {settings.fetch_timeout:g} seconds."
        ) from None


async def _follow(
    url: httpx.URL, settings: Settings, resolver: Resolver, verify: ssl.SSLContext
) -> Page:
    first = url
    for hop in range(settings.fetch_max_redirects + 1):
        try:
            target = await vet(url, resolver=resolver, allow_hosts=settings.fetch_allow_hosts)
        except Blocked as exc:
            via = f" (redirected from {first})" if hop else ""
            raise ToolFailure(f"Refused {url}{via}: {exc}.") from None
        async with httpx.AsyncClient(
            verify=verify, trust_env=False, follow_redirects=False, timeout=settings.fetch_timeout
        ) as client:
            response = await _send(client, target)
            try:
                if response.status_code in REDIRECTS:
                    url = _next_hop(url, response)
                    continue
                return await _read(url, response, settings.fetch_max_bytes)
            finally:
                await response.aclose()
    raise ToolFailure(f"{first} redirected more than {settings.fetch_max_redirects} times.")


async def _send(client: httpx.AsyncClient, target: Target) -> httpx.Response:
    """Connect to the vetted addresses in turn (never to the name) and send the GET."""
    url = target.url
    host = url.raw_host.decode("ascii")
    headers = {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": ACCEPT}
    extensions: dict[str, str] = {}
    if url.scheme == "https" and ip_literal(host) is None:
        extensions["sni_hostname"] = host
    failure: httpx.ConnectError | None = None
    for address in target.addresses[:MAX_ADDRESSES_TRIED]:
        request = client.build_request(
            "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
        except httpx.TimeoutException:
            raise ToolFailure(f"{url} did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise ToolFailure(f"Could not read {url} ({type(exc).__name__}).") from None
    detail = str(failure) or type(failure).__name__
    raise ToolFailure(f"Could not connect to {host} ({detail}).")


def _next_hop(url: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise ToolFailure(f"{url} answered HTTP {response.status_code} without a Location.")
    try:
        return url.join(location)
    except httpx.InvalidURL:
        raise ToolFailure(f"{url} redirected to an invalid URL.") from None


async def _read(url: httpx.URL, response: httpx.Response, cap: int) -> Page:
    status = response.status_code
    if not 200 <= status < 300:
        raise ToolFailure(f"{url} returned HTTP {status} {response.reason_phrase}.".rstrip())
    content_type = response.headers.get("content-type")
    kind = page_text.content_kind(content_type)
    if kind is None:
        shown = page_text.media_type(content_type) or "no content type"
        raise ToolFailure(f"{url} is {shown}; only HTML, JSON and plain text pages can be read.")
    chunks: list[bytes] = []
    size = 0
    truncated = False
    try:
        async for chunk in response.aiter_bytes():
            if size + len(chunk) > cap:
                chunks.append(chunk[: cap - size])
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
    except httpx.TimeoutException:
        raise ToolFailure(f"{url} stopped sending in the middle of the page.") from None
    except httpx.HTTPError as exc:
        raise ToolFailure(f"Reading {url} broke off ({type(exc).__name__}).") from None
    return Page(str(url), kind, b"".join(chunks), response.charset_encoding, truncated)
