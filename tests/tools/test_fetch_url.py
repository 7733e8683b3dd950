"""fetch_url against a real page server on 127.0.0.1, and every SSRF attempt the issue names.

The page server is itself on loopback, which fetch_url refuses. The success paths therefore
use what an admin would: the server's name ("pages.test") is on FETCH_ALLOW_HOSTS, and the
injected resolver (FakeDNS) answers 127.0.0.1 for it. Everything after the lookup is the real
path: the vetted address is connected to, the name goes in the Host header (and the TLS server
name), redirects are vetted hop by hop. `netlog` shows what was connected to and looked up.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
import trustme
from aiohttp import web

from bot.contracts.tool import ToolFailure
from tests.tools.conftest import FakeDNS, NetLog, PageServer, Trap, context, tool_settings
from tools.fetch_url import FetchArgs, fetch_url_tool
from tools.net_guard import system_resolver

PAGES = "pages.test"


def allowed(**overrides: Any) -> Any:
    return tool_settings(**{"fetch_allow_hosts": PAGES, **overrides})


async def fetch(
    url: str,
    http: httpx.AsyncClient,
    *,
    dns: FakeDNS | None = None,
    verify: ssl.SSLContext | None = None,
    **settings: Any,
) -> str:
    tool = fetch_url_tool(resolver=dns or system_resolver, verify=verify)
    ctx = context(allowed(**settings), http)
    return await tool.run(FetchArgs(url=url), ctx)


def dns_for_pages() -> FakeDNS:
    return FakeDNS({PAGES: ["127.0.0.1"]})


# --- success paths -------------------------------------------------------------------------

ARTICLE = """<!doctype html><html><head><title>Streams &amp; logs</title>
<style>.x{color:red}</style><script>var secret = "do-not-show";</script></head>
<body><h1>Redis Streams</h1><p>A stream is an <b>append-only log</b>.
See <a href="/docs/xadd">XADD</a>.</p><img src="/pic.png" alt="diagram"></body></html>"""


async def test_html_page_becomes_markdown(
    pages: PageServer, http: httpx.AsyncClient, netlog: NetLog
) -> None:
    pages.page("/streams", ARTICLE)
    dns = dns_for_pages()
    out = await fetch(f"http://{PAGES}:{pages.port}/streams", http, dns=dns)
    assert out.startswith(f"Title: Streams & logs\nURL: http://{PAGES}:{pages.port}/streams\n\n")
    assert "# Redis Streams" in out
    assert "**append-only log**" in out
    assert f"[XADD](http://{PAGES}:{pages.port}/docs/xadd)" in out  # links made absolute
    assert "do-not-show" not in out and "color:red" not in out and "pic.png" not in out
    # Connected to the vetted address, with the name in the Host header; the name was looked
    # up once, by our resolver, and never again by the HTTP client.
    assert pages.seen[0].host == f"{PAGES}:{pages.port}"
    assert pages.seen[0].user_agent.startswith("deepseek-slack/")
    assert ("127.0.0.1", pages.port) in netlog.connects()
    assert dns.asked == [PAGES]
    assert PAGES not in netlog.lookups()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", json.dumps({"ok": True, "n": 3}), '{"ok": true, "n": 3}'),
        ("application/problem+json", '{"title": "x"}', '{"title": "x"}'),
        ("text/plain; charset=utf-8", "just text\nline two", "just text\nline two"),
        ("text/markdown", "# Heading\n\nbody", "# Heading\n\nbody"),
        ("text/plain; charset=iso-8859-1", "caf\xe9".encode("latin-1"), "café"),
    ],
)
async def test_json_and_text_come_back_as_they_are(
    pages: PageServer, http: httpx.AsyncClient, content_type: str, body: Any, expected: str
) -> None:
    pages.page("/data", body, content_type=content_type)
    out = await fetch(f"http://{PAGES}:{pages.port}/data", http, dns=dns_for_pages())
    assert out == f"URL: http://{PAGES}:{pages.port}/data\n\n{expected}"


async def test_redirects_are_followed_and_the_final_url_shown(
    pages: PageServer, http: httpx.AsyncClient
) -> None:
    pages.redirect("/old", "/middle", status=301)
    pages.redirect("/middle", f"http://{PAGES}:{pages.port}/new", status=307)
    pages.page("/new", "<p>moved here</p>")
    out = await fetch(f"http://{PAGES}:{pages.port}/old", http, dns=dns_for_pages())
    assert f"URL: http://{PAGES}:{pages.port}/new" in out and "moved here" in out
    assert [s.path for s in pages.seen] == ["/old", "/middle", "/new"]


async def test_allow_list_wildcard(pages: PageServer, http: httpx.AsyncClient) -> None:
    pages.page("/", "<p>internal docs</p>")
    dns = FakeDNS({"wiki.corp.test": ["127.0.0.1"]})
    out = await fetch(
        f"http://wiki.corp.test:{pages.port}/", http, dns=dns, fetch_allow_hosts="*.corp.test"
    )
    assert "internal docs" in out


async def test_next_address_is_tried_when_one_refuses(
    pages: PageServer, http: httpx.AsyncClient, netlog: NetLog
) -> None:
    # The page server listens on 127.0.0.1 only: ::1 refuses, 127.0.0.1 answers.
    pages.page("/", "<p>second address</p>")
    dns = FakeDNS({PAGES: ["::1", "127.0.0.1"]})
    out = await fetch(f"http://{PAGES}:{pages.port}/", http, dns=dns)
    assert "second address" in out
    assert [a for a, p in netlog.connects() if p == pages.port] == ["::1", "127.0.0.1"]


async def test_big_page_is_cut_at_the_byte_cap(pages: PageServer, http: httpx.AsyncClient) -> None:
    pages.page("/big", "x" * 50_000, content_type="text/plain")
    out = await fetch(
        f"http://{PAGES}:{pages.port}/big", http, dns=dns_for_pages(), fetch_max_bytes=10_000
    )
    assert out.count("x") == 10_000
    assert out.endswith("[cut: only the first 10,000 bytes of the page were read]")


# --- HTTPS: pinned address, the name checked by TLS -----------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def tls_server(ca: trustme.CA, name: str) -> PageServer:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_ctx)
    server = await PageServer().start(ssl_context=server_ctx)
    server.page("/", "<p>over TLS</p>")
    return server


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_https_connects_to_the_vetted_address_and_verifies_the_name(
    ca: trustme.CA, http: httpx.AsyncClient, netlog: NetLog
) -> None:
    server = await tls_server(ca, PAGES)
    try:
        out = await fetch(
            f"https://{PAGES}:{server.port}/", http, dns=dns_for_pages(), verify=trusting(ca)
        )
    finally:
        await server.stop()
    assert "over TLS" in out
    assert ("127.0.0.1", server.port) in netlog.connects()
    assert server.seen[0].host == f"{PAGES}:{server.port}"


async def test_https_certificate_for_another_name_is_refused(
    ca: trustme.CA, http: httpx.AsyncClient
) -> None:
    server = await tls_server(ca, "someone-else.test")
    try:
        with pytest.raises(ToolFailure, match=r"Could not connect to pages.test.*CERTIFICATE"):
            await fetch(
                f"https://{PAGES}:{server.port}/", http, dns=dns_for_pages(), verify=trusting(ca)
            )
    finally:
        await server.stop()
    assert server.seen == []


# --- failure paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content_type", "message"),
    [
        (404, "text/html", "returned HTTP 404 Not Found"),
        (500, "text/html", "returned HTTP 500"),
        (200, "image/png", "is image/png; only HTML, JSON and plain text"),
        (200, "application/pdf", "is application/pdf"),
        (200, "application/octet-stream", "is application/octet-stream"),
    ],
)
async def test_bad_status_and_unread_types_fail(
    pages: PageServer, http: httpx.AsyncClient, status: int, content_type: str | None, message: str
) -> None:
    pages.page("/x", b"\x89PNG....", status=status, content_type=content_type)
    with pytest.raises(ToolFailure, match=message):
        await fetch(f"http://{PAGES}:{pages.port}/x", http, dns=dns_for_pages())


async def test_too_many_redirects(pages: PageServer, http: httpx.AsyncClient) -> None:
    pages.redirect("/loop", "/loop")
    with pytest.raises(ToolFailure, match=r"redirected more than 2 times"):
        await fetch(
            f"http://{PAGES}:{pages.port}/loop", http, dns=dns_for_pages(), fetch_max_redirects=2
        )
    assert len(pages.seen) == 3


async def test_redirect_without_location(pages: PageServer, http: httpx.AsyncClient) -> None:
    pages.page("/r", "", status=302, content_type=None)
    with pytest.raises(ToolFailure, match=r"without a Location"):
        await fetch(f"http://{PAGES}:{pages.port}/r", http, dns=dns_for_pages())


async def test_slow_page_hits_the_time_cap(pages: PageServer, http: httpx.AsyncClient) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await pages.release.wait()
        return web.Response(text="late")

    pages.routes["/slow"] = stall
    with pytest.raises(ToolFailure, match=r"did not answer within 0.2 seconds"):
        await fetch(
            f"http://{PAGES}:{pages.port}/slow", http, dns=dns_for_pages(), fetch_timeout=0.2
        )


async def test_connection_broken_mid_page(pages: PageServer, http: httpx.AsyncClient) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/plain", "Content-Length": "100000"}
        )
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return response

    pages.routes["/broken"] = broken
    with pytest.raises(ToolFailure, match=r"broke off \(RemoteProtocolError\)"):
        await fetch(f"http://{PAGES}:{pages.port}/broken", http, dns=dns_for_pages())


async def test_unresolvable_host(http: httpx.AsyncClient, netlog: NetLog) -> None:
    with pytest.raises(ToolFailure, match=r"nowhere.test could not be resolved"):
        await fetch("http://nowhere.test/", http, dns=FakeDNS())
    assert netlog.connects() == []


async def test_closed_port(http: httpx.AsyncClient, trap: Trap) -> None:
    await trap.stop()  # nothing listens there any more
    with pytest.raises(ToolFailure, match=r"Could not connect to pages.test"):
        await fetch(f"http://{PAGES}:{trap.port}/", http, dns=dns_for_pages())


# --- SSRF: refused, and nothing is connected to -------------------------------------------

# (URL template, resolver table). {port} is a trap on 127.0.0.1, {port6} one on ::1.
SSRF = [
    ("http://127.0.0.1:{port}/", {}),
    ("http://127.1.2.3:{port}/", {}),
    ("http://localhost:{port}/", {}),
    ("http://LOCALHOST.:{port}/", {}),
    ("http://api.localhost:{port}/", {}),
    ("http://[::1]:{port6}/", {}),
    ("http://[::ffff:127.0.0.1]:{port}/", {}),
    ("http://0.0.0.0:{port}/", {}),
    ("http://2130706433:{port}/", {"2130706433": ["127.0.0.1"]}),  # decimal form of 127.0.0.1
    ("http://10.0.0.1/", {}),
    ("http://10.20.30.40:8080/admin", {}),
    ("http://172.16.0.1/", {}),
    ("http://192.168.1.1/", {}),
    ("http://100.64.0.1/", {}),
    ("http://169.254.169.254/latest/meta-data/", {}),
    ("http://[fd00:ec2::254]/latest/meta-data/", {}),
    ("http://metadata.google.internal/computeMetadata/v1/", {}),
    ("http://224.0.0.1/", {}),
    ("http://docs.example.com:{port}/", {"docs.example.com": ["127.0.0.1"]}),
    ("http://cdn.example.com/", {"cdn.example.com": ["93.184.215.14", "10.0.0.7"]}),
    ("http://meta.example.com/", {"meta.example.com": ["169.254.169.254"]}),
    ("http://v6.example.com:{port6}/", {"v6.example.com": ["::1"]}),
    ("file:///etc/passwd", {}),
    ("gopher://127.0.0.1:{port}/_SET%20x%201", {}),
    ("ftp://127.0.0.1:{port}/", {}),
    ("http://user:secret@example.com/", {"example.com": ["93.184.215.14"]}),
    ("/relative/path", {}),
]


@pytest.mark.parametrize(("template", "table"), SSRF, ids=[t for t, _ in SSRF])
async def test_ssrf_attempts_are_refused_without_a_connection(
    template: str,
    table: dict[str, list[str]],
    http: httpx.AsyncClient,
    netlog: NetLog,
    trap: Trap,
    trap6: Trap,
) -> None:
    url = template.format(port=trap.port, port6=trap6.port)
    # No allow-list here: the admin trusts nothing.
    tool = fetch_url_tool(resolver=FakeDNS(table))
    with pytest.raises(ToolFailure, match=r"^Refused "):
        await tool.run(FetchArgs(url=url), context(tool_settings(), http))
    assert netlog.connects() == []  # no connection to anything, let alone the target
    assert trap.accepted == 0 and trap6.accepted == 0


async def test_system_resolver_decimal_address_is_refused(
    http: httpx.AsyncClient, netlog: NetLog, trap: Trap
) -> None:
    # The real getaddrinfo reads "2130706433" as 127.0.0.1; the check sees what it resolved to.
    tool = fetch_url_tool()
    with pytest.raises(ToolFailure, match=r"resolves to 127.0.0.1, which is a loopback address"):
        await tool.run(
            FetchArgs(url=f"http://2130706433:{trap.port}/"), context(tool_settings(), http)
        )
    assert netlog.connects() == [] and trap.accepted == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{trap}/internal",
        "http://localhost:{trap}/internal",
        "http://[::1]:{trap}/internal",
        "http://169.254.169.254/latest/meta-data/",
        "http://evil.example.com:{trap}/",  # resolves to loopback
        "file:///etc/passwd",
        "gopher://127.0.0.1:{trap}/_x",
    ],
)
async def test_redirect_to_an_inside_address_is_refused(
    location: str, pages: PageServer, http: httpx.AsyncClient, netlog: NetLog, trap: Trap
) -> None:
    pages.redirect("/go", location.format(trap=trap.port))
    dns = FakeDNS({PAGES: ["127.0.0.1"], "evil.example.com": ["127.0.0.1"]})
    with pytest.raises(ToolFailure, match=r"^Refused .*\(redirected from http://pages\.test"):
        await fetch(f"http://{PAGES}:{pages.port}/go", http, dns=dns)
    assert [s.path for s in pages.seen] == ["/go"]
    assert trap.accepted == 0
    assert netlog.ports_connected() == {pages.port}  # the allowed page server and nothing else


async def test_refusal_messages_say_why(http: httpx.AsyncClient) -> None:
    tool = fetch_url_tool(resolver=FakeDNS({"docs.example.com": ["127.0.0.1"]}))
    ctx = context(tool_settings(), http)
    cases = {
        "http://10.0.0.1/": "10.0.0.1 is a private address; only public web pages can be read",
        "http://169.254.169.254/": "a cloud metadata address",
        "http://docs.example.com/": "docs.example.com resolves to 127.0.0.1, which is a loopback",
        "file:///etc/passwd": "only http and https URLs can be read, not file",
        "gopher://x.test/": "not gopher",
    }
    for url, words in cases.items():
        with pytest.raises(ToolFailure) as caught:
            await tool.run(FetchArgs(url=url), ctx)
        assert words in str(caught.value), url


async def test_label_is_short() -> None:
    tool = fetch_url_tool()
    assert tool.label(FetchArgs(url="https://www.example.com/docs/page")) == (
        "Reading example.com/docs/page"
    )
