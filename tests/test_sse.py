"""bot/deepseek/sse.py: table tests of the pure parser, and properties over random streams and
cuts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.contracts.errors import UpstreamError
from bot.contracts.stream import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCall, Usage
from bot.deepseek.sse import (
    ErrorChunk,
    IncompleteStream,
    MalformedStream,
    StreamParser,
    completion_events,
    merge_deltas,
    parse_usage,
)


def parse_stream(chunks: Iterable[bytes]) -> list[StreamEvent]:
    """Parse a whole body given as network chunks, the way the client drives the parser; the
    last event is `Finish`.

    Raises MalformedStream, ErrorChunk or IncompleteStream."""
    parser = StreamParser()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
        if parser.done:
            break
    events += parser.close()
    events.append(parser.finish())
    return events


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chunk shaped like DeepSeek's (key order included)."""
    return {
        "id": "2f5c1d0e-7a7b-4f7e-9d55-0c6a1b2c3d4e",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "deepseek-v4-flash",
        "system_fingerprint": "fp_8802369eaa_prod0425fp8",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def sse(*items: dict[str, Any] | str, done: bool = True, eol: str = "\n") -> bytes:
    """An event stream: dicts become `data: {json}` events, strings are raw lines."""
    out = []
    for item in items:
        line = item if isinstance(item, str) else "data: " + json.dumps(item, ensure_ascii=False)
        out.append(line + eol + eol)
    if done:
        out.append("data: [DONE]" + eol + eol)
    return "".join(out).encode()


def parse(body: bytes, *, fast: bool = True) -> list[StreamEvent]:
    parser = StreamParser(fast=fast)
    events = parser.feed(body) + parser.close()
    return [*events, parser.finish()]


DS_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 40,
    "total_tokens": 140,
    "prompt_cache_hit_tokens": 64,
    "prompt_cache_miss_tokens": 36,
    "completion_tokens_details": {"reasoning_tokens": 25},
}
OPENAI_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 40,
    "total_tokens": 140,
    "prompt_tokens_details": {"cached_tokens": 64},
    "completion_tokens_details": {"reasoning_tokens": 25},
}
USAGE = Usage(prompt=100, completion=40, cache_hit=64, cache_miss=36, reasoning=25)


# --- framing ------------------------------------------------------------------------------

TEXT_HI = [TextDelta("Hi"), TextDelta(" there"), Finish("stop", None)]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            sse(chunk({"content": "Hi"}), chunk({"content": " there"}), chunk({}, "stop")), id="lf"
        ),
        pytest.param(
            sse(
                chunk({"content": "Hi"}),
                chunk({"content": " there"}),
                chunk({}, "stop"),
                eol="\r\n",
            ),
            id="crlf",
        ),
        pytest.param(
            sse(
                chunk({"content": "Hi"}), chunk({"content": " there"}), chunk({}, "stop"), eol="\r"
            ),
            id="cr",
        ),
        pytest.param(
            b"\xef\xbb\xbf"
            + sse(chunk({"content": "Hi"}), chunk({"content": " there"}), chunk({}, "stop")),
            id="bom",
        ),
        pytest.param(
            sse(
                ": keep-alive",
                chunk({"content": "Hi"}),
                ": keep-alive",
                chunk({"content": " there"}),
                chunk({}, "stop"),
            ),
            id="keep-alive-comments",
        ),
        pytest.param(
            b"data:"
            + json.dumps(chunk({"content": "Hi"})).encode()
            + b"\n\n"
            + sse(chunk({"content": " there"}), chunk({}, "stop")),
            id="data-without-space",
        ),
        pytest.param(
            b"event: message\nid: 7\nretry: 1000\ndata: "
            + json.dumps(chunk({"content": "Hi"})).encode()
            + b"\n\n"
            + sse(chunk({"content": " there"}), chunk({}, "stop")),
            id="other-fields-ignored",
        ),
        pytest.param(
            b"data: "
            + json.dumps(chunk({"content": "Hi"}), indent=1).replace("\n", "\ndata: ").encode()
            + b"\n\n"
            + sse(chunk({"content": " there"}), chunk({}, "stop")),
            id="json-over-several-data-lines",
        ),
        pytest.param(
            b"".join(
                b"data: " + json.dumps(c).encode() + b"\n"
                for c in (chunk({"content": "Hi"}), chunk({"content": " there"}), chunk({}, "stop"))
            )
            + b"\ndata: [DONE]\n\n",
            id="json-lines-without-blank-lines",
        ),
        pytest.param(
            sse(chunk({"content": "Hi"}), chunk({"content": " there"}), chunk({}, "stop"))
            + b"data: {not even json\n\n",
            id="after-done-ignored",
        ),
        pytest.param(
            sse(chunk({"content": "Hi"}), chunk({"content": " there"}), done=False)
            + b"data: "
            + json.dumps(chunk({}, "stop")).encode()
            + b"\n",
            id="last-event-without-blank-line",
        ),
        pytest.param(
            sse(
                chunk({"content": "Hi"}),
                chunk({"content": " there"}),
                chunk({}, "stop"),
                done=False,
            )
            + b'data: {"choi',
            id="unterminated-last-line-dropped",
        ),
        pytest.param(
            sse(chunk({"content": "Hi"}), "\n", chunk({"content": " there"}), chunk({}, "stop")),
            id="extra-blank-lines",
        ),
    ],
)
def test_framing(body: bytes) -> None:
    assert parse(body) == TEXT_HI
    assert parse(body, fast=False) == TEXT_HI


def test_keepalives_are_counted() -> None:
    parser = StreamParser()
    parser.feed(b": keep-alive\n\n: keep-alive\r\n\r\n:\n\n")
    assert parser.keepalives == 3


def test_done_stops_the_parser() -> None:
    parser = StreamParser()
    assert parser.feed(sse(chunk({"content": "a"}), chunk({}, "stop"))) == [TextDelta("a")]
    assert parser.done
    assert parser.feed(sse(chunk({"content": "ignored"}))) == []


# --- deltas, tool calls, usage ------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(
            [
                chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
                chunk({"content": None, "reasoning_content": "Let me"}),
                chunk({"content": None, "reasoning_content": " think."}),
                chunk({"content": "Answer", "reasoning_content": None}),
                chunk({}, "stop"),
            ],
            [
                ReasoningDelta("Let me"),
                ReasoningDelta(" think."),
                TextDelta("Answer"),
                Finish("stop", None),
            ],
            id="reasoning-then-text",
        ),
        pytest.param(
            [chunk({"reasoning": "hmm"}), chunk({"content": "ok"}), chunk({}, "stop")],
            [ReasoningDelta("hmm"), TextDelta("ok"), Finish("stop", None)],
            id="reasoning-field-alias",
        ),
        pytest.param(
            [
                chunk({"content": ""}),
                chunk({"content": None}),
                chunk({}),
                chunk({"content": "x"}, "length"),
            ],
            [TextDelta("x"), Finish("length", None)],
            id="empty-deltas-skipped",
        ),
        pytest.param(
            [chunk({"content": 'é😀\n"\\'}), chunk({}, "stop")],
            [TextDelta('é😀\n"\\'), Finish("stop", None)],
            id="escapes-and-astral",
        ),
        pytest.param(
            [chunk({"content": "cut"}), chunk({}, "content_filter")],
            [TextDelta("cut"), Finish("content_filter", None)],
            id="content-filter-is-a-finish-reason-here",
        ),
    ],
)
def test_deltas(chunks: list[dict[str, Any]], expected: list[StreamEvent]) -> None:
    assert parse(sse(*chunks)) == expected
    assert parse(sse(*chunks), fast=False) == expected


def call_head(index: int, name: str, id_: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "id": id_ if id_ is not None else f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }


def call_tail(index: int, args: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": "",
        "type": "function",
        "function": {"name": "", "arguments": args},
    }


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(
            [
                chunk({"tool_calls": [call_head(0, "web_search")]}),
                chunk({"tool_calls": [call_tail(0, '{"query": ')]}),
                chunk({"tool_calls": [call_tail(0, '"redis streams"}')]}),
                chunk({}, "tool_calls"),
            ],
            [ToolCall("call_web_search", "web_search", '{"query": "redis streams"}')],
            id="split-one-call",
        ),
        pytest.param(
            [
                chunk({"tool_calls": [call_head(0, "a"), call_head(1, "b")]}),
                chunk({"tool_calls": [call_tail(1, '{"y":'), call_tail(0, '{"x":')]}),
                chunk({"tool_calls": [call_tail(0, "1}")]}),
                chunk({"tool_calls": [call_tail(1, "2}")]}),
                chunk({}, "tool_calls"),
            ],
            [ToolCall("call_a", "a", '{"x":1}'), ToolCall("call_b", "b", '{"y":2}')],
            id="parallel-interleaved",
        ),
        pytest.param(
            [
                chunk({"tool_calls": [call_head(1, "second")]}),
                chunk({"tool_calls": [call_head(0, "first")]}),
                chunk({}, "tool_calls"),
            ],
            [ToolCall("call_first", "first", ""), ToolCall("call_second", "second", "")],
            id="emitted-in-index-order",
        ),
        pytest.param(
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}
                        ]
                    }
                ),
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": None, "function": {"name": None, "arguments": "}"}}
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}),
                chunk({}, "tool_calls"),
            ],
            [ToolCall("c1", "f", "{}")],
            id="null-and-missing-never-overwrite",
        ),
        pytest.param(
            [
                chunk({"tool_calls": [{"function": {"name": "f", "arguments": '{"q":"ü"}'}}]}),
                chunk({}, "stop"),
            ],
            [ToolCall("call_0", "f", '{"q":"ü"}')],
            id="no-index-no-id",
        ),
        pytest.param(
            [
                chunk({"content": "Let me look."}),
                chunk({"tool_calls": [call_head(0, "f")]}),
                chunk({"tool_calls": [call_tail(0, "{}")]}, "tool_calls"),
            ],
            [TextDelta("Let me look."), ToolCall("call_f", "f", "{}")],
            id="text-then-call-finish-in-same-chunk",
        ),
    ],
)
def test_tool_calls(chunks: list[dict[str, Any]], expected: list[StreamEvent]) -> None:
    events = parse(sse(*chunks))
    assert events[:-1] == expected
    assert isinstance(events[-1], Finish)
    assert parse(sse(*chunks), fast=False) == events


def test_tool_calls_come_only_when_the_choice_finishes() -> None:
    parser = StreamParser()
    assert parser.feed(sse(chunk({"tool_calls": [call_head(0, "f")]}), done=False)) == []
    assert parser.feed(sse(chunk({"tool_calls": [call_tail(0, "{}")]}), done=False)) == []
    assert parser.feed(sse(chunk({}, "tool_calls"))) == [ToolCall("call_f", "f", "{}")]


@pytest.mark.parametrize(
    ("chunks", "usage"),
    [
        pytest.param(
            [chunk({"content": "x"}), chunk({}, "stop", usage=DS_USAGE)],
            USAGE,
            id="deepseek-last-chunk",
        ),
        pytest.param(
            [
                chunk({"content": "x"}, usage=None),
                chunk({}, "stop", usage=None),
                {**chunk({}), "choices": [], "usage": OPENAI_USAGE},
            ],
            USAGE,
            id="openai-choices-empty-chunk",
        ),
        pytest.param(
            [
                chunk({"content": "x"}),
                chunk({}, "stop", usage={"prompt_tokens": 10, "completion_tokens": 2}),
            ],
            Usage(prompt=10, completion=2, cache_hit=0, cache_miss=10, reasoning=0),
            id="no-cache-fields",
        ),
        pytest.param([chunk({"content": "x"}), chunk({}, "stop")], None, id="no-usage"),
    ],
)
def test_usage(chunks: list[dict[str, Any]], usage: Usage | None) -> None:
    assert parse(sse(*chunks))[-1] == Finish("stop", usage)


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        (DS_USAGE, USAGE),
        (OPENAI_USAGE, USAGE),
        ({**DS_USAGE, "prompt_tokens_details": {"cached_tokens": 1}}, USAGE),  # DeepSeek's wins
        (
            {"prompt_tokens": 5, "prompt_tokens_details": None, "completion_tokens_details": None},
            Usage(5, 0, 0, 5, 0),
        ),
        ({"prompt_cache_hit_tokens": 3, "prompt_cache_miss_tokens": 4}, Usage(7, 0, 3, 4, 0)),
        ({"prompt_tokens": "12", "completion_tokens": True}, Usage(0, 0, 0, 0, 0)),
        ({"prompt_tokens": 9.0, "completion_tokens": 3}, Usage(9, 3, 0, 9, 0)),
    ],
)
def test_parse_usage(raw: dict[str, Any], usage: Usage) -> None:
    assert parse_usage(raw) == usage


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"data: {this is not json",
        b"data: <html><body>502 Bad Gateway</body></html>",
        b"data: [1, 2, 3]",
        b'data: "a string"',
        b'data: {"choices": "nope"}',
        b'data: {"choices": [1]}',
        b'data: {"choices": [{"delta": "x"}]}',
        b"data: \x00\x01\xef\xbf\xbd\x7f",
        b'data: {"choices": [{"delta": {"content": "\xff"}}]}',
    ],
)
def test_garbage_is_a_typed_error_without_the_body(line: bytes) -> None:
    for fast in (True, False):
        parser = StreamParser(fast=fast)
        parser.feed(sse(chunk({"content": "fine"}), done=False))
        with pytest.raises(MalformedStream) as caught:
            parser.feed(line + b"\n\n")
        assert isinstance(caught.value, UpstreamError)
        assert caught.value.user_message == UpstreamError.user_message
        assert line[6:].decode(errors="replace") not in str(caught.value)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(b"data: {this is not json\n\n", MalformedStream), (sse({"error": "no"}), ErrorChunk)],
)
def test_events_before_a_bad_one_in_the_same_read_come_first(
    bad: bytes, error: type[Exception]
) -> None:
    """A read holding text and then garbage: the text is returned (it is real, and shown),
    the error is raised by the next call."""
    for fast in (True, False):
        parser = StreamParser(fast=fast)
        good = sse(chunk({"content": "a"}), chunk({"content": "b"}), done=False)
        assert parser.feed(good + bad) == [TextDelta("a"), TextDelta("b")]
        assert parser.failed
        with pytest.raises(error):
            parser.close()
        with pytest.raises(error):
            parser.feed(b"")


@pytest.mark.parametrize(
    ("events", "merged"),
    [
        ([], []),
        ([TextDelta("a")], [TextDelta("a")]),
        ([TextDelta("a"), TextDelta("b"), TextDelta("c")], [TextDelta("abc")]),
        (
            [ReasoningDelta("r"), ReasoningDelta("s"), TextDelta("a"), TextDelta("b")],
            [ReasoningDelta("rs"), TextDelta("ab")],
        ),
        (
            [TextDelta("a"), ToolCall("c1", "f", "{}"), TextDelta("b"), TextDelta("c")],
            [TextDelta("a"), ToolCall("c1", "f", "{}"), TextDelta("bc")],
        ),
        ([TextDelta("a"), ReasoningDelta("r"), TextDelta("b")],) * 2,
    ],
)
def test_merge_deltas(events: list[StreamEvent], merged: list[StreamEvent]) -> None:
    assert merge_deltas(events) == merged


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        ({"error": {"message": "overloaded", "code": 503}}, 503, "overloaded"),
        (
            {"error": {"message": "slow down", "code": "429", "type": "rate_limit"}},
            429,
            "slow down",
        ),
        ({"error": {"message": "?", "code": "server_error"}}, None, "?"),
        ({"error": "plain text"}, None, "plain text"),
    ],
)
def test_error_chunk(payload: dict[str, Any], code: int | None, message: str) -> None:
    with pytest.raises(ErrorChunk) as caught:
        parse(sse(chunk({"content": "a"}), payload))
    assert (caught.value.code, caught.value.message) == (code, message)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        sse(),
        sse(chunk({"content": "half"}), done=False),
        sse(chunk({"content": "half"})),
        sse(chunk({"tool_calls": [call_head(0, "f")]})),
    ],
)
def test_no_finish_reason_is_incomplete(body: bytes) -> None:
    with pytest.raises(IncompleteStream):
        parse(body)


# --- non-streamed completions ---------------------------------------------------------------


def test_whole_completion() -> None:
    obj = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "reasoning_content": "think",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": DS_USAGE,
    }
    assert completion_events(obj) == [
        ReasoningDelta("think"),
        TextDelta("Hi"),
        ToolCall("c1", "f", "{}"),
        Finish("tool_calls", USAGE),
    ]


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"error": {"message": "bad", "code": 400}}, ErrorChunk),
        ({"choices": []}, MalformedStream),
        ({"choices": [{"message": "x"}]}, MalformedStream),
    ],
)
def test_whole_completion_failures(obj: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        completion_events(obj)


# --- learned chunk shapes (the fast path) ---------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(b'{"content":"a","content":"b"}', id="duplicate-key"),
        pytest.param(b'{"content":"a" , "x":"b"}', id="different-foot"),
        pytest.param(b'{"content":"a\\"},{\\"content\\":\\"b"}', id="escaped-quotes"),
        pytest.param(b'{"content":"a"},"x":{"content":"b"}', id="unescaped-quote-mid-value"),
        pytest.param(b'{"content":"\\ud83d\\ude00"}', id="surrogate-pair"),
        pytest.param(b'{"content":"tab\there"}', id="raw-control-character"),
        pytest.param(b'{"content":"\xc3"}', id="bad-utf8"),
    ],
)
def test_template_never_differs_from_a_full_parse(second: bytes) -> None:
    def body(delta: bytes) -> bytes:
        return (
            b'data: {"id":"1","choices":[{"index":0,"delta":'
            + delta
            + b',"finish_reason":null}]}\n\n'
        )

    reads = [body(b'{"content":"learned"}'), body(second), sse(chunk({}, "stop"))]
    results: list[object] = []
    for fast, pieces in ((False, [b"".join(reads)]), (True, [b"".join(reads)]), (True, reads)):
        parser = StreamParser(fast=fast)
        try:
            events = [e for piece in pieces for e in parser.feed(piece)]
            results.append([*events, *parser.close(), parser.finish()])
        except MalformedStream:
            results.append("malformed")
    assert results[0] == results[1] == results[2]


def test_several_shapes_in_one_stream() -> None:
    chunks = [chunk({"content": None, "reasoning_content": f"r{i}"}) for i in range(3)]
    chunks += [chunk({"content": f"t{i}", "reasoning_content": None}) for i in range(3)]
    chunks += [chunk({"content": f"u{i}"}, usage=None) for i in range(3)]
    chunks += [chunk({"content": "end"}), chunk({}, "stop", usage=DS_USAGE)]
    assert parse(sse(*chunks)) == parse(sse(*chunks), fast=False)


# --- properties -----------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=12)
Item = tuple[str, Any]
items = st.lists(
    st.one_of(
        st.tuples(st.just("reasoning"), texts),
        st.tuples(st.just("text"), texts),
        st.tuples(st.just("keepalive"), st.none()),
        st.tuples(st.just("call"), st.tuples(st.integers(0, 2), texts, texts)),
    ),
    max_size=25,
)


def render(
    stream_items: list[Item],
    *,
    eols: list[str],
    compact: bool,
    ascii_only: bool,
    usage_style: str,
) -> tuple[bytes, list[StreamEvent]]:
    """A valid stream for `stream_items`, and the events it must parse to."""
    lines: list[str] = []
    expected: list[StreamEvent] = []
    calls: dict[int, list[str]] = {}
    seps = (",", ":") if compact else (", ", ": ")

    def data(obj: dict[str, Any]) -> None:
        lines.append("data: " + json.dumps(obj, separators=seps, ensure_ascii=ascii_only))
        lines.append("")

    for kind, value in stream_items:
        if kind == "keepalive":
            lines += [": keep-alive", ""]
        elif kind == "reasoning":
            data(chunk({"content": None, "reasoning_content": value}))
            if value:
                expected.append(ReasoningDelta(value))
        elif kind == "text":
            data(chunk({"content": value}))
            if value:
                expected.append(TextDelta(value))
        else:
            index, name, args = value
            if index not in calls:
                calls[index] = [name, args]
                data(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    **call_head(index, name),
                                    "function": {"name": name, "arguments": args},
                                }
                            ]
                        }
                    )
                )
            else:
                calls[index][1] += args
                data(chunk({"tool_calls": [call_tail(index, args)]}))
    expected += [ToolCall(f"call_{n}", n, a) for _, (n, a) in sorted(calls.items())]
    usage_obj = DS_USAGE if usage_style == "deepseek" else OPENAI_USAGE
    if usage_style == "deepseek":
        data(chunk({}, "stop", usage=usage_obj))
    else:
        data(chunk({}, "stop"))
        data({**chunk({}), "choices": [], "usage": usage_obj})
    lines += ["data: [DONE]", ""]
    expected.append(Finish("stop", USAGE))
    body = "".join(line + eols[i % len(eols)] for i, line in enumerate(lines))
    return body.encode(), expected


streams = st.builds(
    render,
    items,
    eols=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3),
    compact=st.booleans(),
    ascii_only=st.booleans(),
    usage_style=st.sampled_from(["deepseek", "openai"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams, data=st.data())
def test_any_cut_parses_to_the_same_events(
    stream: tuple[bytes, list[StreamEvent]], data: st.DataObject
) -> None:
    body, expected = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=40), label="cuts"))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert parse_stream(pieces) == expected
    assert parse_stream([body]) == expected
    # Splits inside a CRLF and inside a multi-byte character, byte by byte at the extreme.
    if len(body) < 1500:
        assert parse_stream([body[i : i + 1] for i in range(len(body))]) == expected
    # One read per event, as tokens arrive live (the single-event fast path).
    events = [part + b"\n\n" for part in body.split(b"\n\n")]
    events[-1] = events[-1][:-2]
    assert parse_stream(events) == expected
    parser = StreamParser(fast=False)
    slow = [e for p in pieces for e in parser.feed(p)] + parser.close() + [parser.finish()]
    assert slow == expected


@settings(max_examples=300, deadline=None)
@given(
    junk=st.binary(max_size=200),
    prefix=st.sampled_from([b"", b"data: ", b"data: {", b'data: {"choices":[']),
)
def test_junk_never_crashes(junk: bytes, prefix: bytes) -> None:
    """Whatever arrives, the parser returns events or raises one of its typed errors."""
    with contextlib.suppress(MalformedStream, ErrorChunk, IncompleteStream):
        parse_stream([sse(chunk({"content": "x"}), done=False), prefix + junk, b"\n\n"])


def test_plain_deltas_are_learned() -> None:
    """The benchmark's speed rests on this: after one chunk of each shape, the rest match."""
    parser = StreamParser()
    parser.feed(sse(*[chunk({"content": None, "reasoning_content": "r"})] * 2, done=False))
    parser.feed(sse(*[chunk({"content": "t"})] * 2, done=False))
    assert [kind for *_, kind in parser._templates] == [ReasoningDelta, TextDelta]
