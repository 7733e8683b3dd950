"""Fixtures for the tool tests: a network log, trap listeners, a page server, a tool context.

`netlog` proves "no connection was made": it records every `socket.connect` and
`socket.getaddrinfo` the process makes while a test runs, through a Python audit hook (PEP 578)
— the interpreter's own report, not a mock of our code. A trap listener counts the connections
it accepts, so a refused fetch can be shown to have reached nothing.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.config import Settings
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import SharedFile, Surface, ToolContext
from tests.conftest import make_settings
from tools.fetch_url import default_ssl_context

THREAD = ThreadRef("T1", "C1", "1700000000.000100")

# --- network log -----------------------------------------------------------------------

_RECORDERS: list[list[tuple[str, Any]]] = []
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _RECORDERS:
        return
    if event == "socket.connect":
        _RECORDERS[-1].append(("connect", args[1]))
    elif event == "socket.getaddrinfo":
        _RECORDERS[-1].append(("lookup", args[0]))


@dataclass
class NetLog:
    events: list[tuple[str, Any]] = field(default_factory=list)

    def connects(self) -> list[tuple[str, int]]:
        return [(str(a[0]), int(a[1])) for kind, a in self.events if kind == "connect"]

    def lookups(self) -> list[str]:
        out = []
        for kind, host in self.events:
            if kind == "lookup":
                out.append(host.decode() if isinstance(host, bytes) else str(host))
        return out

    def ports_connected(self) -> set[int]:
        return {port for _, port in self.connects()}


@pytest.fixture
def netlog() -> Iterator[NetLog]:
    global _HOOKED
    if not _HOOKED:  # audit hooks cannot be removed: install one for the process, once
        sys.addaudithook(_audit)
        _HOOKED = True
    log = NetLog()
    _RECORDERS.append(log.events)
    yield log
    _RECORDERS.remove(log.events)


# --- trap listeners ------------------------------------------------------------------------


@dataclass
class Trap:
    """A TCP listener that only counts the connections it accepts."""

    host: str
    port: int = 0
    accepted: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> Trap:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(on_connect, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    t = await Trap("127.0.0.1").start()
    yield t
    await t.stop()


@pytest.fixture
async def trap6() -> AsyncIterator[Trap]:
    t = await Trap("::1").start()
    yield t
    await t.stop()


# --- page server ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    host: str
    user_agent: str


class PageServer:
    """An HTTP(S) server on 127.0.0.1 with routes a test sets; records what it was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[Seen] = []
        self.port = 0
        self.release = asyncio.Event()  # set at teardown: handlers waiting on it return
        self._runner: web.AppRunner | None = None

    def page(
        self,
        path: str,
        body: str | bytes = "",
        *,
        content_type: str | None = "text/html; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.Response(body=data, status=status, headers=headers or {})
            if content_type is None:
                response.headers.popall("Content-Type", None)
            else:
                response.headers["Content-Type"] = content_type
            return response

        self.routes[path] = handler

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.page(path, "", status=status, headers={"Location": location}, content_type=None)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.path, request.headers.get("Host", ""), request.headers.get("User-Agent", "")
            )
        )
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not here")
        return await handler(request)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> PageServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def pages() -> AsyncIterator[PageServer]:
    server = await PageServer().start()
    yield server
    await server.stop()


# --- resolver and context ------------------------------------------------------------------


class FakeDNS:
    """An injectable resolver: names map to the addresses a test chooses; records lookups.
    Unknown names fail the way getaddrinfo does."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


def tool_settings(**overrides: Any) -> Settings:
    return make_settings(None, None, **overrides)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # One shared TLS context: building one per client (certifi's CAs) costs ~0.1 s a test.
    async with httpx.AsyncClient(verify=default_ssl_context()) as client:
        yield client


def context(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    surface: Surface | None = None,
    files: list[SharedFile] | None = None,
) -> ToolContext:
    return ToolContext(
        thread=THREAD,
        user="U1",
        settings=settings,
        http=http,
        surface=surface,
        files=list(files or []),
    )
