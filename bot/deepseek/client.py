"""DeepSeek V4 client for the official API and OpenAI-compatible gateways.

One call of `DeepSeekClient.stream` is one answer: a streamed `POST {base}/chat/completions`
read as typed events (`bot.contracts.stream`), parsed by the pure `bot.deepseek.sse`. This
module owns the HTTP around it: the request body, timeouts and the total deadline, retries,
error mapping and the one log line per request. The API key goes only into the Authorization
header; everything that reaches an exception or a log line passes through `_redact` first.

How a call runs: `stream` is the retry loop (waits in `_pause`); each try is one `_attempt`
(`_open` the request, then `_whole` or `_read_stream` the answer); `_map_errors` turns every
transport and parser failure of an attempt into our errors (`bot.contracts.errors`), so no
aiohttp or OS exception leaves this module; `_Meter` keeps the accounting for the log line.

The transport is aiohttp, not the httpx client the tools use: every SSE event that arrived
together is parsed and passed on as one read, after the first words a stream is read in
batches (`READ_BATCH_S`), and aiohttp's total timeout is checked at each read without a
timer of its own: all to spend less CPU per streamed token (measured in bench/README.md,
"The streaming path, choice by choice").
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from email.utils import parsedate_to_datetime
from time import time as wall_clock
from types import TracebackType
from typing import Any, NamedTuple, NoReturn
from urllib.parse import urlsplit

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from bot.config import Effort, Settings
from bot.contracts.errors import (
    AuthError,
    BadRequest,
    BalanceExhausted,
    ContentFiltered,
    RateLimited,
    StreamCut,
    UpstreamDown,
    UpstreamError,
    UpstreamTimeout,
)
from bot.contracts.stream import Finish, ReasoningDelta, StreamEvent, TextDelta, Usage
from bot.deepseek.sse import (
    ErrorChunk,
    IncompleteStream,
    MalformedStream,
    StreamParser,
    completion_events,
    merge_deltas,
)

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# After the first words, a stream is read at most this often: Slack shows text once a second
# (SLACK_UPDATE_INTERVAL), so reading every token as it lands (50 a second) buys nothing
# visible and costs a socket read, a task wakeup and a parse per token.
READ_BATCH_S = 0.1
TRICKLE_BYTES = 16 * 1024  # a read this big means data is waiting: read on without a pause
MAX_CONNECTIONS = 256  # concurrent streams per process; more wait for a free connection
BACKOFF_CAP = 8.0  # seconds; the longest wait between two attempts (unless Retry-After)
_ERROR_BODY_CAP = 64 * 1024  # bytes of an error body worth reading
_DRAIN_AFTER_DONE = 0.25  # seconds to read past [DONE] so the connection can be reused
_JSON_TYPES = ("application/json", "text/json")
_SECRETISH = re.compile(r"(sk-|Bearer\s+)[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another one. Raised only before the
    attempt yielded anything, for: HTTP 429, 500, 502, 503, 504; a connection that failed or
    timed out; no response headers or no data within the read timeout; a stream that broke
    or ended without a finish_reason; a retryable error chunk (429, 5xx, no code); and
    finish_reason `insufficient_system_resource`."""

    def __init__(self, error: UpstreamError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _ReadTimeout(Exception):
    """Internal: no data within `deepseek_read_timeout` (keep-alive comments count); the
    message says what was awaited."""


class _Request(NamedTuple):
    url: str
    data: bytes
    headers: Mapping[str, str]


class _Progress:
    """How far one attempt got, as `_map_errors` needs it: `opened` once response headers
    arrived, `yielded` once an event was passed on (from then on nothing is retried)."""

    __slots__ = ("opened", "yielded")

    def __init__(self) -> None:
        self.opened = False
        self.yielded = False


class _Meter:
    """The accounting of one `stream` call: attempts, the last HTTP status, time to the
    first delta, keep-alive comments, the finish and its usage. As a context manager it
    writes the call's one `deepseek_request` log line on the way out, however it ended."""

    __slots__ = (
        "_loop",
        "attempt",
        "finish",
        "gateway",
        "keepalives",
        "model",
        "outcome",
        "start",
        "status",
        "ttft",
    )

    def __init__(self, model: str, gateway: str) -> None:
        self._loop = asyncio.get_running_loop()
        self.model = model
        self.gateway = gateway
        self.start = self._loop.time()
        self.attempt = 0
        self.status: int | None = None
        self.ttft: float | None = None
        self.keepalives = 0
        self.finish: Finish | None = None
        self.outcome = "abandoned"  # the consumer stopped early, unless set otherwise

    def passed_on(self, event: StreamEvent) -> None:
        if self.ttft is None and _is_delta(event):
            self.ttft = self._loop.time()

    def __enter__(self) -> _Meter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, UpstreamError):
            self.outcome = type(error).__name__
            self.status = error.status or self.status
        now = self._loop.time()
        finish = self.finish
        # info even on failure: the caller reports failures (a terminal shows warnings).
        log.info(
            "deepseek_request",
            model=self.model,
            gateway=self.gateway,
            status=self.status,
            attempt=self.attempt,
            outcome=self.outcome,
            finish=finish.reason if finish is not None else None,
            ttft_ms=round((self.ttft - self.start) * 1000) if self.ttft is not None else None,
            duration_ms=round((now - self.start) * 1000),
            keepalives=self.keepalives,
            **_usage_fields(finish.usage if finish is not None else None),
        )


class DeepSeekClient:
    """Streams chat completions over one pooled `aiohttp.ClientSession`, opened on first use
    (inside the running loop) and closed by `aclose`."""

    def __init__(
        self,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        read_batch_s: float = READ_BATCH_S,
    ) -> None:
        self._settings = settings
        self._random = rng or random.Random()
        self._read_batch_s = read_batch_s
        self._session: aiohttp.ClientSession | None = None
        self._proxy = env_proxy(settings.deepseek_base_url)
        key = settings.deepseek_api_key
        self._key = key.get_secret_value() if key is not None else ""

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ttl_dns_cache=300),
                # Not trust_env: it reads ~/.netrc and the proxy variables in a thread on
                # every request; the proxy is read once, when the client is made.
                proxy=self._proxy,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def build_body(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        thinking: bool,
        effort: Effort,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The request body. Thinking mode ignores `temperature` and rejects a forced
        `tool_choice`, so neither is ever sent other than `tool_choice: auto`;
        `reasoning_effort` is sent only while thinking."""
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "thinking": {"type": "enabled" if thinking else "disabled"},
        }
        if thinking:
            body["reasoning_effort"] = effort
        if tools:
            body["tools"] = list(tools)
            body["tool_choice"] = "auto"
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return body

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        thinking: bool,
        effort: Effort,
        max_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream one chat completion as typed events.

        Yields `ReasoningDelta`/`TextDelta` as they arrive, complete `ToolCall`s (in index
        order) when the choice finishes, and last `Finish(reason, usage)`; reason `length`
        is a normal finish (the caller decides).

        Raises (all `UpstreamError`, each with a `user_message`):
        AuthError (401/403, or no key), BalanceExhausted (402), BadRequest (400, 422, other
        4xx), RateLimited (429, with `retry_after`), UpstreamDown (5xx, connection failures,
        `insufficient_system_resource`), UpstreamTimeout (the total deadline, or no data
        within the read timeout on every attempt), ContentFiltered (finish_reason
        `content_filter`, after the text), MalformedStream (not a chat-completion stream),
        StreamCut (the stream broke after events were yielded: the caller keeps them).

        Failures before anything was yielded are retried (429, 5xx, connection errors, a
        stream that dies early) with exponential backoff and jitter, honouring Retry-After,
        up to `deepseek_max_retries` times and never past the total deadline."""
        if not self._key:
            raise AuthError("DEEPSEEK_API_KEY is not set")
        body = self.build_body(
            model=model,
            messages=messages,
            tools=tools,
            thinking=thinking,
            effort=effort,
            max_tokens=max_tokens,
        )
        request = self._request(body)
        with _Meter(model, self._settings.gateway) as meter:
            # Keep-alive comments reset the per-read timer, so only this bounds a request.
            deadline = meter.start + self._settings.deepseek_total_timeout
            while True:
                meter.attempt += 1
                try:
                    async with aclosing(self._attempt(request, deadline, meter)) as events:
                        async for event in events:
                            meter.passed_on(event)
                            yield event
                    meter.outcome = "ok"
                    return
                except _Retry as retry:  # only ever before this attempt yielded anything
                    await self._pause(retry, deadline, meter)

    # --- retries and errors ---------------------------------------------------------------

    async def _pause(self, retry: _Retry, deadline: float, meter: _Meter) -> None:
        """Wait before the next attempt, or raise the failure when no attempt is left or
        the wait would reach the deadline. The wait is the gateway's Retry-After when it sent
        one, else `deepseek_retry_backoff` doubled per attempt (at most BACKOFF_CAP) times a
        random 50-100 % (jitter, so that failed streams do not come back in step)."""
        error = retry.error
        if meter.attempt > self._settings.deepseek_max_retries:
            raise error
        if retry.retry_after is not None:
            delay = retry.retry_after
        else:
            base = self._settings.deepseek_retry_backoff * 2 ** (meter.attempt - 1)
            delay = min(BACKOFF_CAP, base) * (0.5 + self._random.random() / 2)
        if asyncio.get_running_loop().time() + delay >= deadline:
            raise error
        log.info(
            "deepseek_retry",
            model=meter.model,
            attempt=meter.attempt,
            status=meter.status,
            error=type(error).__name__,
            detail=str(error),
            delay_ms=round(delay * 1000),
        )
        await asyncio.sleep(delay)

    @contextmanager
    def _map_errors(self) -> Iterator[_Progress]:
        """Every way an attempt can fail, raised as our error (as httpx's `map_exceptions`
        does), so no transport exception leaves this module. Raised `from None`: aiohttp's
        errors carry the request, its Authorization header included, and a traceback must
        not print them; the message names the original's class where it matters.

        Before the attempt yielded anything a transient failure becomes `_Retry` (the retry
        loop decides); after, StreamCut (the caller keeps what it passed on). The total
        deadline is UpstreamTimeout either way. Our own errors and `_Retry` pass unchanged,
        and so do BaseExceptions (CancelledError, GeneratorExit, KeyboardInterrupt)."""
        progress = _Progress()
        try:
            yield progress
        except _ReadTimeout as exc:
            if progress.yielded:
                raise StreamCut("read timeout after text") from None
            raise _Retry(UpstreamTimeout(str(exc))) from None
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError) and not progress.opened:
                raise _Retry(UpstreamDown("connect timeout")) from None
            # The total deadline (aiohttp's total timeout, or none left for an attempt).
            total = self._settings.deepseek_total_timeout
            raise UpstreamTimeout(f"no complete answer within {total:g} s") from None
        except (aiohttp.ClientError, OSError, IncompleteStream) as exc:
            stage = "stream broke" if progress.opened else "connection failed"
            what = f"{stage}: {type(exc).__name__}"
            if progress.yielded:
                raise StreamCut(what) from None
            raise _Retry(UpstreamDown(what)) from None
        except ErrorChunk as exc:
            error = self._error_for(exc.code, exc.message, None)
            if progress.yielded:
                raise StreamCut(f"error chunk after text: {error}") from None
            raise (_Retry(error) if error.retryable else error) from None
        except MalformedStream as exc:
            if progress.yielded:
                raise StreamCut(f"malformed stream after text: {exc}") from None
            raise

    # --- attempts -------------------------------------------------------------------------

    def _request(self, body: Mapping[str, Any]) -> _Request:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Compressing proxies buffer a stream; ask for it as it is produced.
            "Accept-Encoding": "identity",
        }
        return _Request(f"{self._settings.deepseek_base_url}/chat/completions", data, headers)

    async def _attempt(
        self, request: _Request, deadline: float, meter: _Meter
    ) -> AsyncGenerator[StreamEvent, None]:
        """One attempt: send the request, read the answer, yield its events and last its
        `Finish`. Raises only our errors (see `_map_errors`)."""
        with self._map_errors() as progress:
            response = await self._open(request, deadline)
            progress.opened = True
            meter.status = response.status
            if not 200 <= response.status < 300:
                await self._raise_for_status(response)
            try:
                kind = _content_type(response)
                if kind == "text/html":  # a proxy's error or login page, served with 200
                    raise MalformedStream("an HTML page instead of an event stream")
                if kind in _JSON_TYPES:
                    events, finish = await self._whole(response)
                    for event in events:
                        progress.yielded = True
                        yield event
                    finish = self._check_finish(finish, progress.yielded)
                else:
                    parser = StreamParser()
                    reading = self._read_stream(response, parser, progress, meter.model)
                    async with aclosing(reading):
                        async for event in reading:
                            yield event
                    meter.keepalives = parser.keepalives
                    finish = self._check_finish(parser.finish(), progress.yielded)
                    if parser.done:
                        now = asyncio.get_running_loop().time()
                        await _drain(response.content, min(deadline, now + _DRAIN_AFTER_DONE))
                meter.finish = finish
            finally:
                response.release()
            yield finish

    async def _open(self, request: _Request, deadline: float) -> aiohttp.ClientResponse:
        """Send the request; return the response once its headers arrived, whatever its
        status. Its reads raise TimeoutError at `deadline` (aiohttp's total timeout, checked
        at each wait without a timer per read); `_read` bounds the wait for data."""
        settings = self._settings
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError  # the total deadline
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            connect=settings.deepseek_connect_timeout,  # a free pool slot, then the connection
            ceil_threshold=remaining + 1,  # never round the deadline up to a whole second
        )
        headers_wait = asyncio.timeout(settings.deepseek_read_timeout)
        try:
            async with headers_wait:
                response = await self._http().post(
                    request.url, data=request.data, headers=request.headers, timeout=timeout
                )
        except TimeoutError as exc:
            if headers_wait.expired() and not isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise _ReadTimeout("no response headers within the read timeout") from None
            raise
        return response

    async def _raise_for_status(self, response: aiohttp.ClientResponse) -> NoReturn:
        """Raise the typed error for a non-2xx response, from its status, its body's message
        and Retry-After; as `_Retry` for RETRY_STATUSES. Releases the response."""
        try:
            raw = await _read_capped(response.content, self._settings.deepseek_read_timeout)
        except (aiohttp.ClientError, OSError, _ReadTimeout):
            raw = b""  # the status alone decides
        finally:
            response.release()
        retry_after = _retry_after(response.headers)
        error = self._error_for(response.status, _error_message(raw), retry_after)
        if response.status in RETRY_STATUSES:
            raise _Retry(error, retry_after)
        raise error

    async def _whole(self, response: aiohttp.ClientResponse) -> tuple[list[StreamEvent], Finish]:
        """A JSON body instead of a stream: an error object, or a whole completion from a
        gateway that ignored `stream: true`. Its events, and apart its `Finish`."""
        timeout = self._settings.deepseek_read_timeout
        raw = await _read_capped(response.content, timeout, cap=64 * 1024 * 1024)
        try:
            obj = json.loads(raw)
        except ValueError:
            raise MalformedStream(f"JSON content type but not JSON ({len(raw)} bytes)") from None
        if not isinstance(obj, dict):
            raise MalformedStream("JSON response is not an object")
        *events, finish = completion_events(obj)
        assert isinstance(finish, Finish)  # completion_events ends with it
        return events, finish

    async def _read_stream(
        self,
        response: aiohttp.ClientResponse,
        parser: StreamParser,
        progress: _Progress,
        model: str,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The events of an event-stream body as they arrive: the first read at once, later
        ones in batches (`_pile_up`). Ends at [DONE], at the end of the body, or quietly when
        the connection is lost after the finish_reason."""
        content = response.content
        timeout = self._settings.deepseek_read_timeout
        chunk = b""
        try:
            while not parser.done and not parser.failed:
                # Pause for a trickle of tokens, never for a body that arrives faster than it
                # is read.
                if progress.yielded and len(chunk) < TRICKLE_BYTES:
                    await _pile_up(response, self._read_batch_s)
                # Everything that arrived since the last read, at once.
                chunk = await _read(content, timeout)
                if not chunk:
                    break
                for event in merge_deltas(parser.feed(chunk)):
                    progress.yielded = True
                    yield event
            for event in parser.close():
                progress.yielded = True
                yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            if parser.reason is None:
                raise
            # The answer was complete (finish_reason seen); only the usage chunk or [DONE]
            # went missing with the connection.
            log.info("deepseek_stream_end_lost", model=model, error=type(exc).__name__)

    def _check_finish(self, finish: Finish, yielded: bool) -> Finish:
        if finish.reason == "content_filter":
            raise ContentFiltered("finish_reason=content_filter", usage=finish.usage)
        if finish.reason == "insufficient_system_resource":
            error = UpstreamDown("finish_reason=insufficient_system_resource")
            if yielded:
                raise error
            raise _Retry(error)
        return finish

    def _error_for(
        self, status: int | None, message: str, retry_after: float | None
    ) -> UpstreamError:
        """The typed error for an HTTP status (or an error chunk's code)."""
        detail = self._redact(f"HTTP {status}: {message}" if status else message or "error")
        if status in (401, 403):
            return AuthError(detail, status=status)
        if status == 402:
            return BalanceExhausted(detail, status=status)
        if status == 429:
            return RateLimited(detail, status=status, retry_after=retry_after)
        if status is None or status >= 500:
            return UpstreamDown(detail, status=status)
        return BadRequest(detail, status=status)

    def _redact(self, text: str) -> str:
        """Text from upstream made safe for exceptions and logs: no key, short."""
        if self._key:
            text = text.replace(self._key, "[redacted]")
        text = _SECRETISH.sub(r"\1[redacted]", text)
        return text if len(text) <= 300 else text[:299] + "…"


# --- helpers ------------------------------------------------------------------------------


def env_proxy(url: str) -> str | None:
    """The proxy for `url` from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as
    httpx and the tools use them, or None."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _content_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_delta(event: StreamEvent) -> bool:
    return type(event) is TextDelta or type(event) is ReasoningDelta


async def _pile_up(response: aiohttp.ClientResponse, pause_s: float) -> None:
    """Wait `pause_s` with the socket not being read, so that the tokens of that time
    arrive in one read: one wakeup of the loop, the parser and the consumers per batch
    instead of one per token."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or not transport.is_reading():
        await asyncio.sleep(pause_s)
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(pause_s)
    finally:
        if not transport.is_closing():
            transport.resume_reading()


async def _read(content: aiohttp.StreamReader, timeout: float) -> bytes:
    """The body's next bytes (b"" at its end). Raises _ReadTimeout when nothing comes for
    `timeout` seconds. A timer per read, not per network packet as aiohttp's `sock_read`
    keeps: with batched reads that is ten timers a second per stream instead of fifty."""
    wait = asyncio.timeout(timeout)
    try:
        async with wait:
            return await content.readany()
    except TimeoutError:
        if wait.expired():
            raise _ReadTimeout(f"no data for {timeout:g} s") from None
        raise


async def _read_capped(
    content: aiohttp.StreamReader, timeout: float, cap: int = _ERROR_BODY_CAP
) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < cap and (part := await _read(content, timeout)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)[:cap]


async def _drain(content: aiohttp.StreamReader, until: float) -> None:
    """Read what follows [DONE] (normally just the end of the body) for a moment, so the
    connection goes back to the pool instead of being closed."""
    try:
        async with asyncio.timeout_at(until):
            while await content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass


def _error_message(raw: bytes) -> str:
    """The gateway's error text: `error.message` of a JSON body, else a description (raw
    bodies can be HTML pages, or echo the request)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return f"non-JSON body ({len(raw)} bytes)"
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return f"JSON body without a message ({len(raw)} bytes)"


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - wall_clock())
    except (TypeError, ValueError, IndexError):
        return None


def _usage_fields(usage: Usage | None) -> dict[str, int | None]:
    if usage is None:
        return {"prompt_tokens": None}
    return {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "cache_hit_tokens": usage.cache_hit,
        "cache_miss_tokens": usage.cache_miss,
        "reasoning_tokens": usage.reasoning,
    }
