"""web_search against one local server that answers like SearXNG, Brave Search and Tavily."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.contracts.tool import ToolFailure
from tests.tools.conftest import Trap, context, tool_settings
from tools.web_search import SearchArgs, backend_for, web_search_tool

BRAVE_KEY = "brave-secret-key-123"
TAVILY_KEY = "tvly-secret-key-456"

RESULTS = [
    {
        "title": "Redis Streams",
        "url": "https://redis.io/docs/streams/",
        "text": "An append-only log.",
    },
    {"title": "XADD", "url": "https://redis.io/commands/xadd/", "text": "Appends an entry."},
    {"title": "Kafka vs Redis", "url": "https://example.com/kafka", "text": "A comparison."},
]


@dataclass
class SearchServer:
    """SearXNG at /search, Brave at /res/v1/web/search, Tavily at /tavily/search."""

    url: str = ""
    asked: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: str | None = None  # a raw body instead of results
    results: list[dict[str, str]] = field(default_factory=lambda: list(RESULTS))

    def _fail(self) -> web.Response | None:
        if self.body is not None or self.status != 200:
            return web.Response(text=self.body or "error", status=self.status)
        return None

    async def searxng(self, request: web.Request) -> web.Response:
        self.asked.append({"backend": "searxng", **request.query})
        if request.query.get("format") != "json":
            return web.Response(status=400)
        failed = self._fail()
        if failed:
            return failed
        items = [{"title": r["title"], "url": r["url"], "content": r["text"]} for r in self.results]
        return web.json_response({"query": request.query["q"], "results": items})

    async def brave(self, request: web.Request) -> web.Response:
        self.asked.append(
            {
                "backend": "brave",
                "token": request.headers.get("X-Subscription-Token"),
                **request.query,
            }
        )
        if request.headers.get("X-Subscription-Token") != BRAVE_KEY:
            return web.json_response({"type": "ErrorResponse"}, status=401)
        failed = self._fail()
        if failed:
            return failed
        items = [
            {"title": r["title"], "url": r["url"], "description": f"<strong>{r['text']}</strong>"}
            for r in self.results
        ]
        return web.json_response({"type": "search", "web": {"type": "search", "results": items}})

    async def tavily(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(
            {"backend": "tavily", "auth": request.headers.get("Authorization"), **body}
        )
        if request.headers.get("Authorization") != f"Bearer {TAVILY_KEY}":
            return web.json_response({"detail": {"error": "Unauthorized"}}, status=401)
        failed = self._fail()
        if failed:
            return failed
        items = [
            {"title": r["title"], "url": r["url"], "content": r["text"], "score": 0.9}
            for r in self.results
        ]
        return web.json_response({"query": body["query"], "results": items, "response_time": 0.5})


@pytest.fixture
async def search() -> AsyncIterator[SearchServer]:
    server = SearchServer()
    app = web.Application()
    app.router.add_get("/search", server.searxng)
    app.router.add_get("/res/v1/web/search", server.brave)
    app.router.add_post("/tavily/search", server.tavily)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield server
    await runner.cleanup()


def backend_settings(backend: str, url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "searxng": {"searxng_url": url},
        "brave": {
            "search_backend": "brave",
            "brave_api_key": BRAVE_KEY,
            "brave_api_url": f"{url}/res/v1/web/search",
        },
        "tavily": {
            "search_backend": "tavily",
            "tavily_api_key": TAVILY_KEY,
            "tavily_api_url": f"{url}/tavily/search",
        },
    }[backend]
    return tool_settings(**{**values, **overrides})


async def run_search(settings: Any, http: httpx.AsyncClient, query: str = "redis streams") -> str:
    tool = web_search_tool(settings)
    assert tool is not None
    return await tool.run(SearchArgs(query=query), context(settings, http))


@pytest.mark.parametrize("backend", ["searxng", "brave", "tavily"])
async def test_each_backend_returns_compact_results(
    backend: str, search: SearchServer, http: httpx.AsyncClient
) -> None:
    out = await run_search(backend_settings(backend, search.url), http)
    assert out == (
        "Results for “redis streams”:\n"
        "\n1. Redis Streams\n   https://redis.io/docs/streams/\n   An append-only log.\n"
        "\n2. XADD\n   https://redis.io/commands/xadd/\n   Appends an entry.\n"
        "\n3. Kafka vs Redis\n   https://example.com/kafka\n   A comparison."
    )
    assert len(search.asked) == 1 and search.asked[0]["backend"] == backend


async def test_requests_have_each_api_shape(search: SearchServer, http: httpx.AsyncClient) -> None:
    for backend in ("searxng", "brave", "tavily"):
        await run_search(backend_settings(backend, search.url, search_max_results=4), http, "q1")
    searxng, brave, tavily = search.asked
    assert searxng == {"backend": "searxng", "q": "q1", "format": "json"}
    assert brave == {"backend": "brave", "token": BRAVE_KEY, "q": "q1", "count": "4"}
    assert tavily == {
        "backend": "tavily",
        "auth": f"Bearer {TAVILY_KEY}",
        "query": "q1",
        "max_results": 4,
        "search_depth": "basic",
    }


async def test_searxng_url_may_end_with_search(
    search: SearchServer, http: httpx.AsyncClient
) -> None:
    out = await run_search(tool_settings(searxng_url=f"{search.url}/search/"), http)
    assert "Redis Streams" in out


async def test_output_is_capped(search: SearchServer, http: httpx.AsyncClient) -> None:
    search.results = [
        {"title": f"Result {n}", "url": f"https://example.com/{n}", "text": "word " * 200}
        for n in range(12)
    ]
    out = await run_search(backend_settings("searxng", search.url, search_max_results=3), http)
    assert "3. Result 2" in out and "Result 3" not in out
    snippets = [line for line in out.splitlines() if line.startswith("   word")]
    assert snippets and all(len(s) <= 3 + 300 and s.endswith("…") for s in snippets)


async def test_no_results(search: SearchServer, http: httpx.AsyncClient) -> None:
    search.results = []
    out = await run_search(backend_settings("tavily", search.url), http, "zzzx")
    assert out == "No results for “zzzx”."


@pytest.mark.parametrize(
    ("backend", "status", "body", "message"),
    [
        ("searxng", 403, None, "SearXNG refused JSON output: `json` must be listed"),
        ("searxng", 429, None, "SearXNG is rate limiting searches"),
        ("brave", 500, None, "Brave Search answered HTTP 500"),
        ("tavily", 502, None, "Tavily answered HTTP 502"),
        ("searxng", 200, "<html>not json</html>", "SearXNG sent an answer that is not JSON"),
        (
            "brave",
            200,
            '{"web": {"results": 7}}',
            "Brave Search sent an answer that is not a result",
        ),
        ("tavily", 200, '["a list"]', "Tavily sent an answer that is not a result list"),
    ],
)
async def test_backend_failures_are_readable(
    backend: str,
    status: int,
    body: str | None,
    message: str,
    search: SearchServer,
    http: httpx.AsyncClient,
) -> None:
    search.status, search.body = status, body
    with pytest.raises(ToolFailure, match=re.escape(message)):
        await run_search(backend_settings(backend, search.url), http)


@pytest.mark.parametrize("backend", ["brave", "tavily"])
async def test_bad_key_is_named_but_not_shown(
    backend: str, search: SearchServer, http: httpx.AsyncClient
) -> None:
    settings = backend_settings(backend, search.url, **{f"{backend}_api_key": "wrong-key-789"})
    with pytest.raises(ToolFailure) as caught:
        await run_search(settings, http)
    assert "refused the request (HTTP 401): check its API key" in str(caught.value)
    assert "wrong-key-789" not in str(caught.value)


async def test_unreachable_backend(trap: Trap, http: httpx.AsyncClient) -> None:
    await trap.stop()
    with pytest.raises(ToolFailure, match=r"Could not reach SearXNG \(ConnectError\)"):
        await run_search(tool_settings(searxng_url=f"http://127.0.0.1:{trap.port}"), http)


async def test_slow_backend(http: httpx.AsyncClient) -> None:
    gate = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await gate.wait()
        return web.json_response({"results": []})

    app = web.Application()
    app.router.add_get("/search", stall)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        with pytest.raises(ToolFailure, match=r"SearXNG did not answer in time"):
            await run_search(tool_settings(searxng_url=url, search_timeout=0.2), http)
    finally:
        gate.set()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"searxng_url": "http://s"}, "searxng"),
        ({"brave_api_key": "k"}, "brave"),
        ({"tavily_api_key": "k"}, "tavily"),
        ({"searxng_url": "http://s", "brave_api_key": "k", "tavily_api_key": "k"}, "searxng"),
        ({"brave_api_key": "k", "tavily_api_key": "k"}, "brave"),
        ({"search_backend": "tavily", "searxng_url": "http://s", "tavily_api_key": "k"}, "tavily"),
        ({"search_backend": "brave", "searxng_url": "http://s"}, None),
    ],
)
def test_backend_choice(overrides: dict[str, Any], expected: str | None) -> None:
    settings = tool_settings(**overrides)
    assert backend_for(settings) == expected
    assert (web_search_tool(settings) is None) == (expected is None)


def test_label_and_arguments() -> None:
    tool = web_search_tool(tool_settings(searxng_url="http://s"))
    assert tool is not None
    assert (
        tool.label(SearchArgs(query="redis  streams\n")) == "Searching the web for “redis streams”"
    )
    long = tool.label(SearchArgs(query="x" * 100))
    assert long.endswith("…”") and len(long) < 100
    with pytest.raises(ValueError):
        SearchArgs(query="")
    with pytest.raises(ValueError):
        SearchArgs(query="q" * 401)  # Tavily's limit, applied to every backend
