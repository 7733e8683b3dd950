"""bot/deepseek/client.py against the fake DeepSeek server: requests, streams, retries, deadlines,
typed errors, the recorded quirks, and that the API key never leaks."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from structlog.typing import EventDict

from bot.config import Settings
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
from bot.contracts.stream import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCall, Usage
from bot.deepseek.client import READ_BATCH_S, DeepSeekClient, env_proxy
from bot.deepseek.sse import MalformedStream
from tests.conftest import API_KEY, free_port, make_settings
from tests.fakes.deepseek import FakeDeepSeek, Reply, _chunk, error_reply, text_reply, tool_reply

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "web_search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
DS_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 300,
    "total_tokens": 1300,
    "prompt_cache_hit_tokens": 896,
    "prompt_cache_miss_tokens": 104,
    "completion_tokens_details": {"reasoning_tokens": 120},
}
OPENAI_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 300,
    "total_tokens": 1300,
    "prompt_tokens_details": {"cached_tokens": 896},
    "completion_tokens_details": {"reasoning_tokens": 120},
}
USAGE = Usage(prompt=1000, completion=300, cache_hit=896, cache_miss=104, reasoning=120)


_clients: list[DeepSeekClient] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().aclose()


@pytest.fixture
def logs() -> Iterator[list[EventDict]]:
    """Every structlog event while the test runs (the autouse reset in conftest.py leaves
    structlog at its defaults, so nothing filters them out first)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def make_client(
    fake: FakeDeepSeek | None, *, read_batch_s: float = READ_BATCH_S, **overrides: Any
) -> DeepSeekClient:
    settings: Settings = make_settings(None, fake, **overrides)
    client = DeepSeekClient(settings, rng=random.Random(7), read_batch_s=read_batch_s)
    _clients.append(client)
    return client


async def collect(client: DeepSeekClient, **kw: Any) -> list[StreamEvent]:
    args: dict[str, Any] = {
        "model": "deepseek-v4-flash",
        "messages": MESSAGES,
        "tools": None,
        "thinking": True,
        "effort": "high",
    }
    args.update(kw)
    return [event async for event in client.stream(**args)]


async def collect_failure(
    client: DeepSeekClient, error: type[UpstreamError], **kw: Any
) -> tuple[list[StreamEvent], UpstreamError]:
    """The events that arrived before the stream raised `error`, and the error."""
    events: list[StreamEvent] = []
    args: dict[str, Any] = {
        "model": "deepseek-v4-flash",
        "messages": MESSAGES,
        "tools": None,
        "thinking": True,
        "effort": "high",
    }
    args.update(kw)
    with pytest.raises(error) as caught:
        async for event in client.stream(**args):
            events.append(event)
    return events, caught.value


def text_of(events: list[StreamEvent], kind: type[TextDelta | ReasoningDelta] = TextDelta) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


def requests_logged(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "deepseek_request"]


# --- requests -----------------------------------------------------------------------------


async def test_streams_reasoning_text_and_usage(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(
        text_reply("Paris is the capital.", reasoning="France... Paris.", usage=DS_USAGE)
    )
    events = await collect(make_client(fake_deepseek))
    assert text_of(events, ReasoningDelta) == "France... Paris."
    assert text_of(events) == "Paris is the capital."
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(isinstance(e, ReasoningDelta) for e in events[:first_text])
    assert events[-1] == Finish("stop", USAGE)
    headers = {k.lower(): v for k, v in fake_deepseek.headers[0].items()}
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("thinking", [True, False])
@pytest.mark.parametrize("tools", [None, TOOLS])
@pytest.mark.parametrize("max_tokens", [None, 4096])
async def test_request_body(
    fake_deepseek: FakeDeepSeek,
    thinking: bool,
    tools: list[dict[str, Any]] | None,
    max_tokens: int | None,
) -> None:
    await collect(
        make_client(fake_deepseek),
        model="deepseek-v4-pro",
        tools=tools,
        thinking=thinking,
        effort="max",
        max_tokens=max_tokens,
    )
    body = fake_deepseek.requests[0]
    expected: dict[str, Any] = {
        "model": "deepseek-v4-pro",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "thinking": {"type": "enabled" if thinking else "disabled"},
    }
    if thinking:
        expected["reasoning_effort"] = "max"
    if tools:
        expected |= {"tools": TOOLS, "tool_choice": "auto"}
    if max_tokens:
        expected["max_tokens"] = max_tokens
    assert body == expected  # never `temperature`, never a forced tool_choice


async def test_reasoning_content_is_sent_back_byte_for_byte(fake_deepseek: FakeDeepSeek) -> None:
    reasoning = 'Ünïcode 😀, "quotes", \\ and\nnewlines\u2028 stay as they are.'
    history = [
        *MESSAGES,
        {"role": "assistant", "content": "", "reasoning_content": reasoning, "tool_calls": []},
        {"role": "user", "content": "And?"},
    ]
    await collect(make_client(fake_deepseek), messages=history, tools=TOOLS)
    assert fake_deepseek.requests[0]["messages"][2]["reasoning_content"] == reasoning


async def test_split_and_parallel_tool_calls(fake_deepseek: FakeDeepSeek) -> None:
    calls: list[tuple[str, dict[str, Any] | str]] = [
        ("web_search", {"query": "redis streams", "limit": 5}),
        ("fetch_url", '{"url": "https://example.com/ü?q=\\"x\\""}'),
        ("calculator", {"expression": "6*7"}),
    ]
    fake_deepseek.push(tool_reply(calls, reasoning="I should look.", fragments=7))
    events = await collect(make_client(fake_deepseek), tools=TOOLS)
    tool_calls = [e for e in events if isinstance(e, ToolCall)]
    assert tool_calls == [
        ToolCall(f"call_{i}_{name}", name, args if isinstance(args, str) else json.dumps(args))
        for i, (name, args) in enumerate(calls)
    ]
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    assert events[-1 - len(calls) : -1] == tool_calls  # after every delta, just before Finish


@pytest.mark.parametrize(("style", "usage"), [("deepseek", DS_USAGE), ("openai", OPENAI_USAGE)])
async def test_usage_either_style(
    fake_deepseek: FakeDeepSeek, style: str, usage: dict[str, Any]
) -> None:
    fake_deepseek.push(text_reply("ok", usage=usage, usage_style=style))
    events = await collect(make_client(fake_deepseek))
    assert events[-1] == Finish("stop", USAGE)


async def test_keepalives_then_answer(fake_deepseek: FakeDeepSeek) -> None:
    reply = text_reply("Done thinking.", keepalive_for=0.15)
    reply.chunks.insert(2, ": keep-alive")  # a comment between data lines too
    fake_deepseek.push(reply)
    events = await collect(make_client(fake_deepseek))
    assert text_of(events) == "Done thinking."


async def test_stream_without_done_is_complete_with_a_finish_reason(
    fake_deepseek: FakeDeepSeek,
) -> None:
    fake_deepseek.push(text_reply("no DONE line", done=False))
    events = await collect(make_client(fake_deepseek))
    assert text_of(events) == "no DONE line" and isinstance(events[-1], Finish)


async def test_bytes_cut_anywhere_on_the_wire(fake_deepseek: FakeDeepSeek) -> None:
    """CRLF line ends, a BOM, and writes that split a CRLF and a 4-byte character."""
    lines = [
        _chunk({"reasoning_content": "Hm 🤔"}),
        _chunk({"content": "Grüße 😀"}),
        _chunk({}, "stop"),
    ]
    body = b"\xef\xbb\xbf" + b"".join(
        b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\r\n\r\n" for c in lines
    )
    body += b": keep-alive\r\n\r\ndata: [DONE]\r\n\r\n"
    emoji = body.index("😀".encode())
    crlf = body.index(b"\r\n")
    cuts = sorted({1, crlf + 1, emoji + 1, emoji + 2, emoji + 3, len(body) - 3})
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    fake_deepseek.push(Reply(pieces=pieces, chunk_delay=0.005))
    events = await collect(make_client(fake_deepseek))
    assert events == [ReasoningDelta("Hm 🤔"), TextDelta("Grüße 😀"), Finish("stop", None)]


async def test_whole_json_completion_from_a_gateway_that_ignores_stream(
    fake_deepseek: FakeDeepSeek,
) -> None:
    completion = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Whole.", "reasoning_content": "r"},
                "finish_reason": "stop",
            }
        ],
        "usage": DS_USAGE,
    }
    fake_deepseek.push(
        Reply(raw_body=json.dumps(completion).encode(), content_type="application/json")
    )
    events = await collect(make_client(fake_deepseek))
    assert events == [ReasoningDelta("r"), TextDelta("Whole."), Finish("stop", USAGE)]


# --- finish reasons -------------------------------------------------------------------------


async def test_length_is_a_finish(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("Cut at the limit", finish="length", usage=DS_USAGE))
    events = await collect(make_client(fake_deepseek))
    assert events[-1] == Finish("length", USAGE)


async def test_content_filter_raises_after_the_text(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("Some text before", finish="content_filter"))
    events, _ = await collect_failure(make_client(fake_deepseek), ContentFiltered)
    assert text_of(events) == "Some text before"
    assert not any(isinstance(e, Finish) for e in events)
    assert len(fake_deepseek.requests) == 1


async def test_insufficient_resource_before_text_is_retried(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(
        Reply(chunks=[_chunk({"role": "assistant"}), _chunk({}, "insufficient_system_resource")]),
        text_reply("Second try."),
    )
    events = await collect(make_client(fake_deepseek))
    assert text_of(events) == "Second try." and len(fake_deepseek.requests) == 2


async def test_insufficient_resource_after_text_is_upstream_down(
    fake_deepseek: FakeDeepSeek,
) -> None:
    fake_deepseek.push(text_reply("Partial", finish="insufficient_system_resource"))
    events, _ = await collect_failure(make_client(fake_deepseek), UpstreamDown)
    assert text_of(events) == "Partial" and len(fake_deepseek.requests) == 1


# --- HTTP errors and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, AuthError),
        (402, BalanceExhausted),
        (403, AuthError),
        (404, BadRequest),
        (422, BadRequest),
        (429, RateLimited),
        (500, UpstreamDown),
        (502, UpstreamDown),
        (503, UpstreamDown),
        (504, UpstreamDown),
    ],
)
async def test_status_maps_to_a_typed_error(
    fake_deepseek: FakeDeepSeek, status: int, error: type[UpstreamError]
) -> None:
    fake_deepseek.push(error_reply(status, f"upstream says {status}"))
    _, caught = await collect_failure(make_client(fake_deepseek, deepseek_max_retries=0), error)
    assert type(caught) is error
    assert caught.status == status
    assert caught.user_message == error.user_message
    assert f"upstream says {status}" in caught.detail  # for the logs, not for people
    assert len(fake_deepseek.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 422])
async def test_client_errors_are_not_retried(fake_deepseek: FakeDeepSeek, status: int) -> None:
    fake_deepseek.push(error_reply(status), error_reply(status), text_reply())
    await collect_failure(make_client(fake_deepseek, deepseek_max_retries=3), UpstreamError)
    assert len(fake_deepseek.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(fake_deepseek: FakeDeepSeek, status: int) -> None:
    fake_deepseek.push(error_reply(status), error_reply(status), text_reply("Third time."))
    events = await collect(make_client(fake_deepseek, deepseek_max_retries=2))
    assert text_of(events) == "Third time." and len(fake_deepseek.requests) == 3


async def test_retries_run_out(fake_deepseek: FakeDeepSeek, logs: list[dict[str, Any]]) -> None:
    fake_deepseek.push(*[error_reply(503, "overloaded")] * 4)
    await collect_failure(make_client(fake_deepseek, deepseek_max_retries=2), UpstreamDown)
    assert len(fake_deepseek.requests) == 3
    (line,) = requests_logged(logs)
    assert (line["attempt"], line["status"], line["outcome"]) == (3, 503, "UpstreamDown")


async def test_backoff_doubles_with_jitter(
    fake_deepseek: FakeDeepSeek, logs: list[dict[str, Any]]
) -> None:
    fake_deepseek.push(*[error_reply(500)] * 4, text_reply())
    client = make_client(fake_deepseek, deepseek_max_retries=4, deepseek_retry_backoff=0.004)
    await collect(client)
    delays = [e["delay_ms"] / 1000 for e in logs if e["event"] == "deepseek_retry"]
    assert len(delays) == 4
    for n, delay in enumerate(delays):
        assert 0.004 * 2**n / 2 <= delay <= 0.004 * 2**n + 0.001
    assert len(set(delays)) > 1


async def test_retry_after_is_honoured(
    fake_deepseek: FakeDeepSeek, logs: list[dict[str, Any]]
) -> None:
    body = {"error": {"message": "slow down", "code": "429"}}
    fake_deepseek.push(
        Reply(status=429, body=body, headers={"Retry-After": "0.12"}),
        Reply(status=503, body=body, headers={"retry-after-ms": "40"}),
        text_reply("After waiting."),
    )
    events = await collect(make_client(fake_deepseek, deepseek_max_retries=2))
    assert text_of(events) == "After waiting."
    assert [e["delay_ms"] for e in logs if e["event"] == "deepseek_retry"] == [120, 40]


async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    fake_deepseek: FakeDeepSeek,
) -> None:
    fake_deepseek.push(error_reply(429, "come back in an hour", retry_after=3600), text_reply())
    _, caught = await collect_failure(make_client(fake_deepseek), RateLimited)
    assert isinstance(caught, RateLimited) and caught.retry_after == 3600
    assert len(fake_deepseek.requests) == 1


async def test_rate_limited_carries_retry_after(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(error_reply(429, retry_after=0))
    _, caught = await collect_failure(
        make_client(fake_deepseek, deepseek_max_retries=0), RateLimited
    )
    assert isinstance(caught, RateLimited) and caught.retry_after == 0


async def test_connect_errors_are_retried_then_upstream_down(logs: list[dict[str, Any]]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    client = make_client(None, deepseek_base_url=closed, deepseek_max_retries=2)
    _, caught = await collect_failure(client, UpstreamDown)
    assert "ClientConnectorError" in caught.detail
    assert len([e for e in logs if e["event"] == "deepseek_retry"]) == 2


async def test_html_error_page_is_described_not_echoed(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(Reply(status=502, raw_body=b"<html><body>Bad Gateway</body></html>"))
    _, caught = await collect_failure(
        make_client(fake_deepseek, deepseek_max_retries=0), UpstreamDown
    )
    assert "<html" not in str(caught) and "non-JSON body" in caught.detail


# --- broken streams ---------------------------------------------------------------------------


async def test_stream_dying_before_the_first_token_is_retried(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(
        text_reply("never", reasoning="never", disconnect_after=1), text_reply("Yes.")
    )
    events = await collect(make_client(fake_deepseek))
    assert text_of(events) == "Yes." and not text_of(events, ReasoningDelta)
    assert len(fake_deepseek.requests) == 2


async def test_stream_cut_after_text_raises_stream_cut(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("one two three four", pieces=4, disconnect_after=3), text_reply())
    events, _ = await collect_failure(make_client(fake_deepseek), StreamCut)
    assert text_of(events) == "one two th"  # exactly what arrived (2 of 4 pieces); no Finish
    assert len(fake_deepseek.requests) == 1  # not silently retried


async def test_stream_cut_after_reasoning_raises_stream_cut(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("text", reasoning="thinking hard", disconnect_after=3))
    events, _ = await collect_failure(make_client(fake_deepseek), StreamCut)
    assert text_of(events, ReasoningDelta) and len(fake_deepseek.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(chunks=[]), id="done-only"),
        pytest.param(Reply(chunks=[], done=False), id="empty"),
        pytest.param(Reply(chunks=[_chunk({"role": "assistant"})], done=False), id="no-finish"),
    ],
)
async def test_stream_ending_without_an_answer_is_retried(
    fake_deepseek: FakeDeepSeek, reply: Reply
) -> None:
    fake_deepseek.push(reply, text_reply("Finally."))
    assert text_of(await collect(make_client(fake_deepseek))) == "Finally."


async def test_read_timeout_before_the_first_token_is_retried(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("late", first_token_delay=2.0), text_reply("On time."))
    client = make_client(fake_deepseek, deepseek_read_timeout=0.2)
    assert text_of(await collect(client)) == "On time."


async def test_read_timeouts_run_out(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(*[text_reply("late", first_token_delay=2.0)] * 2)
    client = make_client(fake_deepseek, deepseek_read_timeout=0.2, deepseek_max_retries=1)
    await collect_failure(client, UpstreamTimeout)
    assert len(fake_deepseek.requests) == 2


async def test_keepalives_do_not_outlive_the_deadline(fake_deepseek: FakeDeepSeek) -> None:
    """Keep-alive comments reset the per-read timer; the total deadline still ends it."""
    fake_deepseek.push(Reply(keepalive_for=5.0), text_reply())
    client = make_client(fake_deepseek, deepseek_read_timeout=0.2, deepseek_total_timeout=0.6)
    await collect_failure(client, UpstreamTimeout)
    assert len(fake_deepseek.requests) == 1


async def test_deadline_after_text_is_a_timeout(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("slow words here", pieces=3, chunk_delay=0.4))
    client = make_client(fake_deepseek, deepseek_total_timeout=0.5)
    events, _ = await collect_failure(client, UpstreamTimeout)
    assert text_of(events)  # the caller keeps what arrived


@pytest.mark.parametrize(
    "line",
    ["data: {this is not json", "data: [1, 2, 3]", 'data: {"choices": "nope"}', "data: \x00\x01"],
)
async def test_garbage_before_text(fake_deepseek: FakeDeepSeek, line: str) -> None:
    fake_deepseek.push(Reply(chunks=[line]), text_reply())
    _, caught = await collect_failure(make_client(fake_deepseek), MalformedStream)
    assert isinstance(caught, UpstreamError)
    assert line[6:] not in str(caught) and line[6:] not in caught.user_message
    assert len(fake_deepseek.requests) == 1


async def test_garbage_after_text_is_a_cut(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(Reply(chunks=[_chunk({"content": "Shown."}), "data: <html>oops"]))
    events, _ = await collect_failure(make_client(fake_deepseek), StreamCut)
    assert text_of(events) == "Shown."


async def test_html_page_with_200(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(Reply(raw_body=b"<!doctype html><title>login</title>"))
    _, caught = await collect_failure(make_client(fake_deepseek), MalformedStream)
    assert "login" not in str(caught)


@pytest.mark.parametrize(
    ("error", "then", "expected"),
    [
        pytest.param({"message": "overloaded", "code": 503}, text_reply("Back."), None, id="503"),
        pytest.param({"message": "bad param", "code": 400}, text_reply(), BadRequest, id="400"),
    ],
)
async def test_error_chunk_before_text(
    fake_deepseek: FakeDeepSeek,
    error: dict[str, Any],
    then: Reply,
    expected: type[UpstreamError] | None,
) -> None:
    fake_deepseek.push(Reply(chunks=[{"error": error}]), then)
    client = make_client(fake_deepseek)
    if expected is None:
        assert text_of(await collect(client)) == "Back."
    else:
        await collect_failure(client, expected)
        assert len(fake_deepseek.requests) == 1


async def test_error_chunk_after_text_is_a_cut(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(Reply(chunks=[_chunk({"content": "Half"}), {"error": {"code": 500}}]))
    events, _ = await collect_failure(make_client(fake_deepseek), StreamCut)
    assert text_of(events) == "Half"


# --- the key, logs, and the pool ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            error_reply(401, f"Authentication Fails, your key {API_KEY} is invalid"), id="401"
        ),
        pytest.param(error_reply(400, f"bad header: Authorization: Bearer {API_KEY}"), id="400"),
        pytest.param(
            Reply(chunks=[{"error": {"message": f"key {API_KEY} suspended", "code": 403}}]),
            id="error-chunk",
        ),
        pytest.param(
            Reply(status=500, raw_body=f"<pre>Authorization: Bearer {API_KEY}</pre>".encode()),
            id="raw-500",
        ),
    ],
)
async def test_the_key_never_leaks(
    fake_deepseek: FakeDeepSeek,
    logs: list[dict[str, Any]],
    reply: Reply,
) -> None:
    fake_deepseek.push(reply)
    _, caught = await collect_failure(
        make_client(fake_deepseek, deepseek_max_retries=0), UpstreamError
    )
    exposed = [str(caught), repr(caught), caught.detail, caught.user_message, repr(logs)]
    cause = caught.__cause__ or caught.__context__
    while cause is not None:
        exposed.append(repr(cause))
        cause = cause.__cause__ or cause.__context__
    for text in exposed:
        assert API_KEY not in text
        assert API_KEY[8:] not in text  # not even most of it


async def test_missing_key_is_an_auth_error_without_a_request(fake_deepseek: FakeDeepSeek) -> None:
    await collect_failure(make_client(fake_deepseek, deepseek_api_key=None), AuthError)
    assert fake_deepseek.requests == []


async def test_one_log_line_per_request(
    fake_deepseek: FakeDeepSeek, logs: list[dict[str, Any]]
) -> None:
    fake_deepseek.push(error_reply(503), text_reply("ok", reasoning="hm", usage=DS_USAGE))
    await collect(make_client(fake_deepseek))
    (line,) = requests_logged(logs)
    assert line["log_level"] == "info"
    assert line["model"] == "deepseek-v4-flash"
    assert (line["status"], line["attempt"], line["outcome"], line["finish"]) == (
        200,
        2,
        "ok",
        "stop",
    )
    assert isinstance(line["ttft_ms"], int) and line["duration_ms"] >= line["ttft_ms"] >= 0
    assert (line["prompt_tokens"], line["completion_tokens"]) == (1000, 300)
    assert (line["cache_hit_tokens"], line["cache_miss_tokens"], line["reasoning_tokens"]) == (
        896,
        104,
        120,
    )
    assert API_KEY not in repr(logs)


async def test_stopping_early_closes_the_response(
    fake_deepseek: FakeDeepSeek, logs: list[dict[str, Any]]
) -> None:
    fake_deepseek.push(text_reply("a b c d e f", pieces=6, chunk_delay=0.01), text_reply("next"))
    client = make_client(fake_deepseek)
    stream = client.stream(model="m", messages=MESSAGES, tools=None, thinking=False, effort="high")
    async for event in stream:
        assert isinstance(event, TextDelta)
        break
    await stream.aclose()  # type: ignore[attr-defined]
    (line,) = requests_logged(logs)
    assert line["outcome"] == "abandoned"
    assert text_of(await collect(client)) == "next"  # the pool is fine


async def test_connections_are_reused(fake_deepseek: FakeDeepSeek) -> None:
    client = make_client(fake_deepseek)
    for _ in range(3):
        await collect(client)
    assert len(set(fake_deepseek.peers)) == 1


async def test_proxy_from_the_environment(
    fake_deepseek: FakeDeepSeek, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY is honoured (read once, when the client is made); NO_PROXY too."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_deepseek.url)
    client = make_client(fake_deepseek, deepseek_base_url="http://deepseek.invalid")
    assert text_of(await collect(client)) == "Hello from fake DeepSeek."
    assert fake_deepseek.headers[-1]["Host"] == "deepseek.invalid"
    monkeypatch.setenv("NO_PROXY", "deepseek.invalid")
    assert env_proxy("http://deepseek.invalid") is None


async def test_first_words_at_once_then_tokens_in_batches(fake_deepseek: FakeDeepSeek) -> None:
    """The first delta is passed on as it arrives; after it, the tokens that arrive within
    READ_BATCH_S come as one delta (one read), whatever the machine's speed."""
    text = "".join(f"w{i} " for i in range(40))
    fake_deepseek.push(text_reply(text, pieces=40, chunk_delay=0.01))  # 0.4 s of tokens
    events = await collect(make_client(fake_deepseek))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == text
    assert deltas[0] == text[: -(-len(text) // 40)]  # the first piece alone
    assert len(deltas) <= 1 + 0.4 / READ_BATCH_S + 2  # not one per token (40)


async def test_a_fast_body_is_read_without_batch_pauses(fake_deepseek: FakeDeepSeek) -> None:
    """Batching is for a trickle of tokens: 2 MB sent at once is read on without pausing
    (paused reads of ~64 KiB a second would take ~30 s; this one at most one pause)."""
    text = "x" * 2_000_000
    fake_deepseek.push(text_reply(text, pieces=200))
    async with asyncio.timeout(5):
        events = await collect(make_client(fake_deepseek, read_batch_s=1.0))
    assert text_of(events) == text
