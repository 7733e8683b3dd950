"""DeepSeek V4 client for the official API and OpenAI-compatible gateways.

One call of `DeepSeekClient.stream` is one answer: a streamed `POST {base}/chat/completions`
read as typed events (`bot.contracts.stream`), parsed by the pure `bot.deepseek.sse`. This
module owns the HTTP around it: the request body, timeouts and the total deadline, retries,
error mapping
and the one log line per request. The API key goes only into the Authorization header;
everything that reaches an exception or a log line passes through `_redact` first.

The transport is aiohttp, not the httpx client the tools use: every SSE event that arrived
together is parsed and passed on as one read, after the first words a stream is read in
batches (`READ_BATCH_S`), and aiohttp's total timeout is checked at each read without a
timer of its own. Measured in bench/README.md ("Load"): 195 µs of CPU per streamed token
with httpx + anyio and per-token reads, 77-89 µs now (with the other changes listed there).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from time import time as wall_clock
from typing import Any
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
_SECRETISH = re.compile(r"(sk-|Bearer\s+)[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another one (nothing was yielded yet)."""

    def __init__(self, error: UpstreamError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _ReadTimeout(Exception):
    """Internal: no data within `deepseek_read_timeout` (keep-alive comments count)."""


class DeepSeekClient:
    """Streams chat completions over one pooled `aiohttp.ClientSession`, opened on first use
    (inside the running loop) and closed by `aclose`."""

    def __init__(self, settings: Settings, *, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._random = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._proxy = env_proxy(settings.deepseek_base_url)
        key = settings.deepseek_api_key
        self._key = key.get_secret_value() if key is not None else ""

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ttl_dns_cache=300),
                # Not trust_env: it reads ~/.netrc and the proxy variables in a thread on
                # every request (5% of the CPU at 200 streams); the proxy is read once.
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
        settings = self._settings
        body = self.build_body(
            model=model,
            messages=messages,
            tools=tools,
            thinking=thinking,
            effort=effort,
            max_tokens=max_tokens,
        )
        url = f"{settings.deepseek_base_url}/chat/completions"
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Compressing proxies buffer a stream; ask for it as it is produced.
            "Accept-Encoding": "identity",
        }
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Keep-alive comments reset the per-read timer, so only this bounds a request.
        deadline = start + settings.deepseek_total_timeout
        attempt = 0
        status: int | None = None
        ttft: float | None = None
        finish: Finish | None = None
        outcome = "abandoned"  # the consumer stopped early unless set below
        keepalives = 0
        try:
            while True:
                attempt += 1
                yielded = False
                try:
                    response = await self._open(url, data, headers, deadline)
                    status = response.status
                    try:
                        kind = _content_type(response)
                        if kind in ("application/json", "text/json"):
                            for event in await self._whole(response):
                                if isinstance(event, Finish):
                                    finish = self._check_finish(event, yielded)
                                    break
                                if ttft is None and _is_delta(event):
                                    ttft = loop.time()
                                yielded = True
                                yield event
                            assert finish is not None
                            yield finish
                            outcome = "ok"
                            return
                        if kind == "text/html":
                            # A proxy's error or login page served with 200.
                            raise MalformedStream("an HTML page instead of an event stream")
                        parser = StreamParser()
                        content = response.content
                        chunk = b""
                        try:
                            while not parser.done and not parser.failed:
                                # Pause for a trickle of tokens, never for a body that
                                # arrives faster than it is read.
                                if yielded and len(chunk) < TRICKLE_BYTES:
                                    await _pile_up(response)
                                # Everything that arrived since the last read, at once.
                                chunk = await _read(content, settings.deepseek_read_timeout)
                                if not chunk:
                                    break
                                for event in merge_deltas(parser.feed(chunk)):
                                    if ttft is None and _is_delta(event):
                                        ttft = loop.time()
                                    yielded = True
                                    yield event
                            for event in parser.close():
                                if ttft is None and _is_delta(event):
                                    ttft = loop.time()
                                yielded = True
                                yield event
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            if parser.reason is None:
                                raise
                            # The answer was complete (finish_reason seen); only the usage
                            # chunk or [DONE] went missing with the connection.
                            log.info(
                                "deepseek_stream_end_lost",
                                model=model,
                                error=type(exc).__name__,
                            )
                        keepalives = parser.keepalives
                        finish = self._check_finish(parser.finish(), yielded)
                        if parser.done:
                            await _drain(content, min(deadline, loop.time() + _DRAIN_AFTER_DONE))
                    finally:
                        response.release()
                except _Retry as retry:
                    status = retry.error.status or status
                    await self._pause(retry, attempt, deadline, model=model, status=status)
                    continue
                except _ReadTimeout:
                    if yielded:
                        raise StreamCut("read timeout after text") from None
                    await self._pause(
                        _Retry(
                            UpstreamTimeout(f"no data for {settings.deepseek_read_timeout:g} s")
                        ),
                        attempt,
                        deadline,
                        model=model,
                        status=status,
                    )
                    continue
                except TimeoutError:  # the total deadline (aiohttp's total timeout)
                    raise UpstreamTimeout(
                        f"no complete answer within {settings.deepseek_total_timeout:g} s"
                    ) from None
                except (aiohttp.ClientError, OSError, IncompleteStream) as exc:
                    what = f"stream broke: {type(exc).__name__}"
                    if yielded:
                        raise StreamCut(what) from None
                    await self._pause(
                        _Retry(UpstreamDown(what)), attempt, deadline, model=model, status=status
                    )
                    continue
                except ErrorChunk as exc:
                    error = self._error_for(exc.code, exc.message, None)
                    if yielded:
                        raise StreamCut(f"error chunk after text: {error}") from None
                    if error.retryable:
                        await self._pause(
                            _Retry(error), attempt, deadline, model=model, status=status
                        )
                        continue
                    raise error from None
                except MalformedStream as exc:
                    if yielded:
                        raise StreamCut(f"malformed stream after text: {exc}") from None
                    raise
                assert finish is not None
                yield finish
                outcome = "ok"
                return
        except UpstreamError as exc:
            outcome = type(exc).__name__
            status = exc.status or status
            raise
        finally:
            now = loop.time()
            usage = finish.usage if finish is not None else None
            # info even on failure: the caller reports failures (a terminal shows warnings).
            log.info(
                "deepseek_request",
                model=model,
                gateway=settings.gateway,
                status=status,
                attempt=attempt,
                outcome=outcome,
                finish=finish.reason if finish is not None else None,
                ttft_ms=round((ttft - start) * 1000) if ttft is not None else None,
                duration_ms=round((now - start) * 1000),
                keepalives=keepalives,
                **_usage_fields(usage),
            )

    # --- attempts -------------------------------------------------------------------------

    async def _open(
        self, url: str, data: bytes, headers: Mapping[str, str], deadline: float
    ) -> aiohttp.ClientResponse:
        """Send the request; return a streaming 2xx response or raise (typed, or _Retry).
        The response's reads raise TimeoutError at `deadline` (aiohttp's total timeout,
        checked at each wait without a timer per read); `_read` bounds the wait for data."""
        settings = self._settings
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            connect=settings.deepseek_connect_timeout,  # a free pool slot, then the connection
            ceil_threshold=remaining + 1,  # never round the deadline up to a whole second
        )
        headers_wait = asyncio.timeout(settings.deepseek_read_timeout)
        try:
            async with headers_wait:
                response = await self._http().post(url, data=data, headers=headers, timeout=timeout)
        except aiohttp.ConnectionTimeoutError:
            raise _Retry(UpstreamDown("connect timeout")) from None
        except TimeoutError:
            if not headers_wait.expired():
                raise  # the total deadline
            raise _Retry(UpstreamTimeout("no response headers within the read timeout")) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retry(UpstreamDown(f"connection failed: {type(exc).__name__}")) from None
        if 200 <= response.status < 300:
            return response
        try:
            raw = await _read_capped(response.content, settings.deepseek_read_timeout)
        except (aiohttp.ClientError, OSError, _ReadTimeout):
            raw = b""
        finally:
            response.release()
        retry_after = _retry_after(response.headers)
        error = self._error_for(response.status, _error_message(raw), retry_after)
        if response.status in RETRY_STATUSES:
            raise _Retry(error, retry_after)
        raise error

    async def _whole(self, response: aiohttp.ClientResponse) -> list[StreamEvent]:
        """A JSON body instead of a stream: an error object, or a whole completion from a
        gateway that ignored `stream: true`."""
        timeout = self._settings.deepseek_read_timeout
        raw = await _read_capped(response.content, timeout, cap=64 * 1024 * 1024)
        try:
            obj = json.loads(raw)
        except ValueError:
            raise MalformedStream(f"JSON content type but not JSON ({len(raw)} bytes)") from None
        if not isinstance(obj, dict):
            raise MalformedStream("JSON response is not an object")
        return completion_events(obj)

    def _check_finish(self, finish: Finish, yielded: bool) -> Finish:
        if finish.reason == "content_filter":
            raise ContentFiltered("finish_reason=content_filter", usage=finish.usage)
        if finish.reason == "insufficient_system_resource":
            error = UpstreamDown("finish_reason=insufficient_system_resource")
            if yielded:
                raise error
            raise _Retry(error)
        return finish

    async def _pause(
        self,
        retry: _Retry,
        attempt: int,
        deadline: float,
        *,
        model: str,
        status: int | None,
    ) -> None:
        """Wait before the next attempt, or raise the failure when no attempt is left or
        the wait would pass the deadline."""
        error = retry.error
        if attempt > self._settings.deepseek_max_retries:
            raise error
        if retry.retry_after is not None:
            delay = retry.retry_after
        else:
            base = self._settings.deepseek_retry_backoff * 2 ** (attempt - 1)
            delay = min(BACKOFF_CAP, base) * (0.5 + self._random.random() / 2)
        loop = asyncio.get_running_loop()
        if loop.time() + delay >= deadline:
            raise error
        log.info(
            "deepseek_retry",
            model=model,
            attempt=attempt,
            status=status,
            error=type(error).__name__,
            detail=str(error),
            delay_ms=round(delay * 1000),
        )
        await asyncio.sleep(delay)

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


async def _pile_up(response: aiohttp.ClientResponse) -> None:
    """Wait READ_BATCH_S with the socket not being read, so that the tokens of that time
    arrive in one read: one wakeup of the loop, the parser and the consumers per batch
    instead of one per token (bench/README.md, "Load": with the pause, 110 -> 88-99 µs of CPU
    per token at 200 streams)."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or not transport.is_reading():
        await asyncio.sleep(READ_BATCH_S)
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(READ_BATCH_S)
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
            raise _ReadTimeout from None
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
