"""The DeepSeek client's one error mapping (`DeepSeekClient._map_errors`): every transport and
parser failure of an attempt leaves `bot/deepseek/client.py` as one of our errors (raised from
the original); our own errors, CancelledError and the like pass unchanged. No clock, and the
only network is a local server that answers with garbage."""

from __future__ import annotations

import asyncio
import random
import traceback

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from bot.contracts.errors import (
    AuthError,
    BadRequest,
    ContentFiltered,
    RateLimited,
    StreamCut,
    UpstreamDown,
    UpstreamError,
    UpstreamTimeout,
)
from bot.deepseek.client import DeepSeekClient, _read, _ReadTimeout, _Retry
from bot.deepseek.sse import ErrorChunk, IncompleteStream, MalformedStream
from tests.conftest import API_KEY, make_settings

TOTAL_TIMEOUT = 30.0


def make_client(**overrides: object) -> DeepSeekClient:
    settings = make_settings(None, None, deepseek_total_timeout=TOTAL_TIMEOUT, **overrides)
    return DeepSeekClient(settings, rng=random.Random(7))


def mapped(exc: BaseException, *, opened: bool = True, yielded: bool = False) -> BaseException:
    """What leaves the mapping when an attempt that got so far raises `exc`."""
    with pytest.raises(BaseException) as caught, make_client()._map_errors() as progress:
        progress.opened = opened or yielded
        progress.yielded = yielded
        raise exc
    return caught.value


TRANSIENT_BEFORE_EVENTS = [
    (_ReadTimeout("no response headers within the read timeout"), False, UpstreamTimeout),
    (_ReadTimeout("no data for 7 s"), True, UpstreamTimeout),
    (aiohttp.ConnectionTimeoutError("Connection timeout to host"), False, UpstreamDown),
    (aiohttp.ClientConnectionError("refused"), False, UpstreamDown),
    (ConnectionRefusedError(111, "refused"), False, UpstreamDown),
    (aiohttp.ServerDisconnectedError(), True, UpstreamDown),
    (aiohttp.ClientPayloadError("cut"), True, UpstreamDown),
    (aiohttp.ClientOSError(104, "reset"), True, UpstreamDown),
    (ConnectionResetError(104, "reset"), True, UpstreamDown),
    (IncompleteStream("stream ended without finish_reason"), True, UpstreamDown),
    (ErrorChunk(503, "overloaded"), True, UpstreamDown),
    (ErrorChunk(None, "something failed"), True, UpstreamDown),
    (ErrorChunk(429, "slow down"), True, RateLimited),
]


@pytest.mark.parametrize(
    ("exc", "opened", "error"),
    TRANSIENT_BEFORE_EVENTS,
    ids=[f"{type(e).__name__}-{i}" for i, (e, _, _) in enumerate(TRANSIENT_BEFORE_EVENTS)],
)
def test_transient_failure_before_any_event_is_worth_a_retry(
    exc: Exception, opened: bool, error: type[UpstreamError]
) -> None:
    out = mapped(exc, opened=opened)
    assert isinstance(out, _Retry)
    assert type(out.error) is error
    assert out.__cause__ is None and out.__suppress_context__  # never printed with it


@pytest.mark.parametrize(
    ("exc", "opened", "detail"),
    [
        (_ReadTimeout("no data for 7 s"), True, "no data for 7 s"),
        (
            _ReadTimeout("no response headers within the read timeout"),
            False,
            "no response headers within the read timeout",
        ),
        (aiohttp.ConnectionTimeoutError("to host"), False, "connect timeout"),
        (
            ConnectionRefusedError(111, "refused"),
            False,
            "connection failed: ConnectionRefusedError",
        ),
        (aiohttp.ServerDisconnectedError(), True, "stream broke: ServerDisconnectedError"),
        (IncompleteStream("no finish_reason"), True, "stream broke: IncompleteStream"),
        (ErrorChunk(503, "overloaded"), True, "HTTP 503: overloaded"),
    ],
)
def test_retry_details_say_what_failed(exc: Exception, opened: bool, detail: str) -> None:
    out = mapped(exc, opened=opened)
    assert isinstance(out, _Retry) and out.error.detail == detail


@pytest.mark.parametrize(
    ("exc", "detail"),
    [
        (_ReadTimeout("no data for 7 s"), "read timeout after text"),
        (aiohttp.ServerDisconnectedError(), "stream broke: ServerDisconnectedError"),
        (aiohttp.ClientPayloadError("cut"), "stream broke: ClientPayloadError"),
        (OSError(5, "io"), "stream broke: OSError"),
        (IncompleteStream("no finish_reason"), "stream broke: IncompleteStream"),
        (ErrorChunk(500, "boom"), "error chunk after text: HTTP 500: boom"),
        (ErrorChunk(400, "bad"), "error chunk after text: HTTP 400: bad"),
        (MalformedStream("not a chunk"), "malformed stream after text: not a chunk"),
    ],
)
def test_failure_after_an_event_is_a_cut_never_a_retry(exc: Exception, detail: str) -> None:
    out = mapped(exc, yielded=True)
    assert type(out) is StreamCut
    assert out.detail == detail
    assert out.__cause__ is None and out.__suppress_context__  # never printed with it


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        aiohttp.ServerTimeoutError("timeout"),
        aiohttp.SocketTimeoutError("timeout"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("yielded", [False, True])
def test_the_total_deadline_is_a_timeout_never_retried(exc: Exception, yielded: bool) -> None:
    out = mapped(exc, yielded=yielded)
    assert type(out) is UpstreamTimeout
    assert out.detail == f"no complete answer within {TOTAL_TIMEOUT:g} s"
    assert out.__cause__ is None and out.__suppress_context__  # never printed with it


@pytest.mark.parametrize(
    ("code", "error"), [(400, BadRequest), (401, AuthError), (403, AuthError), (404, BadRequest)]
)
def test_a_final_error_chunk_before_any_event_is_raised_as_it_is(
    code: int, error: type[UpstreamError]
) -> None:
    out = mapped(ErrorChunk(code, "no"), yielded=False)
    assert type(out) is error and out.status == code


def test_malformed_before_any_event_is_raised_as_it_is() -> None:
    exc = MalformedStream("not a chat-completion stream")
    assert mapped(exc, yielded=False) is exc


def test_an_error_chunk_never_carries_the_key() -> None:
    out = mapped(ErrorChunk(403, f"your key {API_KEY} is suspended"), yielded=False)
    assert isinstance(out, AuthError)
    assert API_KEY not in str(out) and API_KEY[8:] not in out.detail


@pytest.mark.parametrize(
    "exc",
    [
        _Retry(UpstreamDown("503")),
        BadRequest("400", status=400),
        ContentFiltered("finish_reason=content_filter"),
        UpstreamDown("finish_reason=insufficient_system_resource"),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        GeneratorExit(),
        ValueError("a bug stays a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("yielded", [False, True])
def test_everything_else_passes_unchanged(exc: BaseException, yielded: bool) -> None:
    assert mapped(exc, yielded=yielded) is exc


TRANSPORT = [
    aiohttp.ClientError(),
    aiohttp.ClientConnectionError(),
    aiohttp.ClientOSError(),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ServerTimeoutError(),
    aiohttp.ConnectionTimeoutError(),
    aiohttp.SocketTimeoutError(),
    aiohttp.ClientPayloadError(),
    OSError(),
    ConnectionError(),
    ConnectionResetError(),
    BrokenPipeError(),
    TimeoutError(),
    _ReadTimeout("no data"),
    IncompleteStream(),
    ErrorChunk(None, ""),
]


@pytest.mark.parametrize("exc", TRANSPORT, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("opened", "yielded"), [(False, False), (True, False), (True, True)])
def test_no_transport_exception_leaves(exc: Exception, opened: bool, yielded: bool) -> None:
    out = mapped(exc, opened=opened, yielded=yielded)
    assert isinstance(out, UpstreamError | _Retry)
    if yielded:
        assert not isinstance(out, _Retry)  # nothing is retried after an event


async def test_a_read_timeout_maps_to_a_retry() -> None:
    """A real `_read` of a body that sends nothing, with a timeout already due: no sleep."""
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.transport = asyncio.Transport()  # connected; nothing ever arrives
    content = aiohttp.StreamReader(protocol, 2**16, loop=loop)
    with pytest.raises(_Retry) as caught, make_client()._map_errors() as progress:
        progress.opened = True
        await _read(content, 0)
    assert type(caught.value.error) is UpstreamTimeout
    assert caught.value.error.detail == "no data for 0 s"


async def test_cancellation_propagates() -> None:
    client = make_client()
    entered = asyncio.Event()

    async def attempt() -> None:
        with client._map_errors():
            entered.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(attempt())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_garbage_response_is_upstream_down() -> None:
    """A server that answers the request with something other than HTTP: aiohttp's parser
    error stays inside the client."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_client(deepseek_base_url=f"http://127.0.0.1:{port}", deepseek_max_retries=0)
    try:
        with pytest.raises(UpstreamDown) as caught:
            async for _ in client.stream(
                model="m", messages=[], tools=None, thinking=False, effort="high"
            ):
                pass
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert caught.value.detail.startswith("connection failed: ")
    # aiohttp's error carries the request and its Authorization header: a logged traceback
    # of ours must not print it.
    printed = "".join(traceback.format_exception(caught.value))
    assert API_KEY not in printed and "NOT HTTP" not in printed
