"""The answer renderer against the fake Slack Web API.

Its input is an async stream of engine events (what `Engine.run` yields), written out here;
its output is what the fake Slack shows. No timing is asserted: "first words at once" is shown
by an event stream that will not go on until Slack has them, batching by an interval so long
that only the first and the final call can happen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.errors import StreamCut, UpstreamDown
from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.stream import ReasoningDelta, TextDelta, Usage
from bot.slack.blocks import FEEDBACK_ACTION, REASONING_ACTION, RETRY_ACTION, TurnRef
from bot.slack.format import open_fence
from bot.slack.stream import AnswerStream, Limits, Rendered, Target
from tests.conftest import BOT_TOKEN
from tests.fakes.slack import FakeSlack, Message

TARGET = Target(channel="C1", thread_ts="1700000000.000001", team="T1", user="U1")
USAGE = Usage(prompt=1200, completion=300, cache_hit=1000, cache_miss=200, reasoning=100)

Step = EngineEvent | Callable[[], Awaitable[None]]


@pytest.fixture
async def client(fake_slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.url)


async def events(*steps: Step) -> AsyncIterator[EngineEvent]:
    """Yield events in order; a callable step is awaited in between (a gate)."""
    for step in steps:
        if callable(step):
            await step()
        else:
            yield step


def done(text: str, reasoning: str = "", turn_id: str = "t1") -> TurnDone:
    return TurnDone(text, reasoning, "deepseek-v4-flash", True, USAGE, 420, turn_id)


def deltas(text: str, size: int = 7) -> list[TextDelta]:
    return [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]


def stream(client: AsyncWebClient, **kw: Any) -> AnswerStream:
    kw.setdefault("interval", 3600.0)  # only the first and the final call can happen
    kw.setdefault("update_interval", 3600.0)
    return AnswerStream(client, TARGET, **kw)


def answer_messages(fake: FakeSlack) -> list[Message]:
    return fake.bot_replies(TARGET.channel, TARGET.thread_ts)


def visible(msg: Message) -> str:
    """What a message shows: streamed text, or a posted message's markdown block."""
    md = [b["text"] for b in msg.blocks if b.get("type") == "markdown"]
    return "".join(md) if md else msg.text


def action_ids(msg: Message) -> list[str]:
    out = []
    for block in msg.blocks:
        out += [e.get("action_id", "") for e in block.get("elements", [])]
    return out


def tasks(fake: FakeSlack) -> list[dict[str, Any]]:
    found = []
    for call in fake.calls:
        chunks = call.args.get("chunks") or []
        if isinstance(chunks, str):
            chunks = json.loads(chunks)
        found += [c for c in chunks if c.get("type") == "task_update"]
    return found


def until(fake: FakeSlack, predicate: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    async def gate() -> None:
        await fake.wait_for(predicate)

    return gate


async def test_answer_streams_natively_and_ends_with_feedback(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    text = "Redis streams are **append-only logs**.\n\n- XADD\n- XREAD"
    out = await stream(client).render(events(*deltas(text), done(text)))

    assert isinstance(out.end, TurnDone) and not out.fell_back
    start = fake_slack.calls_of("chat.startStream")[0].args
    assert (start["recipient_team_id"], start["recipient_user_id"]) == ("T1", "U1")
    assert start["thread_ts"] == TARGET.thread_ts
    [msg] = answer_messages(fake_slack)
    assert msg.text == text and not msg.streaming
    assert action_ids(msg) == [FEEDBACK_ACTION]  # no reasoning: no "Show reasoning"
    feedback = msg.blocks[0]["elements"][0]
    value = json.loads(feedback["positive_button"]["value"])
    assert value["vote"] == "up" and value["model"] == "deepseek-v4-flash"
    assert TurnRef.loads(feedback["negative_button"]["value"]) == TurnRef(
        "C1", TARGET.thread_ts, "t1", "deepseek-v4-flash"
    )
    assert out.messages == [msg.ts]


async def test_first_words_go_out_before_the_rest_exists(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    """The stream will not produce more until Slack shows "Hello": a renderer that waited
    for a buffer to fill would never get there."""
    shown = until(fake_slack, lambda: any("Hello" in m.text for m in fake_slack.messages.values()))
    out = await stream(client).render(
        events(TextDelta("Hello"), shown, TextDelta(", world."), done("Hello, world."))
    )
    assert out.text == "Hello, world."
    assert [c.method for c in fake_slack.calls] == ["chat.startStream", "chat.stopStream"]


async def test_batches_between_first_words_and_the_end(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    text = "word " * 400
    await stream(client).render(events(*deltas(text, 3), done(text)))
    assert [c.method for c in fake_slack.calls] == ["chat.startStream", "chat.stopStream"]
    assert answer_messages(fake_slack)[0].text == text


async def test_a_due_batch_goes_out_while_the_model_pauses(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    """With no interval to wait, text sitting in the batch is sent while the engine is busy
    (a tool running): the stream only continues once Slack shows it."""
    shown = until(fake_slack, lambda: "second part" in answer_messages(fake_slack)[0].text)
    await stream(client, interval=0.0).render(
        events(TextDelta("first part, "), TextDelta("second part"), shown, done("x"))
    )
    assert fake_slack.calls_of("chat.appendStream")


async def test_reasoning_shows_as_a_thinking_task_not_text(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    secret = "the user probably means consumer groups"
    await stream(client).render(
        events(ReasoningDelta(secret), TextDelta("Use XGROUP."), done("Use XGROUP.", secret))
    )
    [msg] = answer_messages(fake_slack)
    assert secret not in msg.text and secret not in json.dumps(msg.blocks)
    states = [(t["id"], t["status"]) for t in tasks(fake_slack)]
    assert states[0] == ("thinking-1", "in_progress")
    assert ("thinking-1", "complete") in states
    assert tasks(fake_slack)[0]["title"] == "Thinking…"
    assert action_ids(msg) == [REASONING_ACTION, FEEDBACK_ACTION]


async def test_tools_show_as_tasks_with_the_engine_label_and_set_status(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    statuses: list[str] = []

    async def status(text: str) -> None:
        statuses.append(text)

    label = "Searching the web for “redis streams”"
    await stream(client, status=status, interval=0.0).render(
        events(
            ToolStarted("c1", "web_search", label),
            ToolFinished("c1", "web_search", label, True, 12),
            ToolStarted("c2", "fetch_url", "Reading example.com"),
            ToolFinished("c2", "fetch_url", "Reading example.com", False, 5),
            TextDelta("Found it."),
            done("Found it."),
        )
    )
    states = {(t["id"], t["title"], t["status"]) for t in tasks(fake_slack)}
    assert ("c1", label, "in_progress") in states
    assert ("c1", label, "complete") in states
    assert ("c2", "Reading example.com", "error") in states
    assert statuses == [
        "is searching the web for “redis streams”…",
        "is reading example.com…",
    ]


async def test_footer_when_configured(client: AsyncWebClient, fake_slack: FakeSlack) -> None:
    await stream(client, show_footer=True).render(events(TextDelta("Hi."), done("Hi.")))
    [msg] = answer_messages(fake_slack)
    context = [b for b in msg.blocks if b["type"] == "context"]
    line = context[0]["elements"][0]["text"]
    assert line.startswith("deepseek-v4-flash · thinking · 1,200 in (1,000 cached)")
    assert line.endswith("$0.0004")


async def test_streaming_unavailable_falls_back_to_post_and_update(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("chat.startStream", "not_allowed_token_type", times=-1)
    shown = until(fake_slack, lambda: bool(fake_slack.calls_of("chat.postMessage")))
    text = "First words. " + "More words. " * 20
    out = await stream(client).render(
        events(TextDelta("First words. "), shown, *deltas(text[13:]), done(text))
    )
    assert out.fell_back
    [msg] = answer_messages(fake_slack)
    assert visible(msg) == text.rstrip() or visible(msg) == text
    assert msg.text.strip() == text.strip()
    assert fake_slack.calls_of("chat.update")  # the rest arrived by rewriting the message
    assert action_ids(msg) == [FEEDBACK_ACTION]


async def test_fallback_shows_activity_then_drops_it(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("chat.startStream", "method_not_supported_for_channel_type", times=-1)
    label = "Searching the web for “x”"
    posted = until(fake_slack, lambda: bool(fake_slack.calls_of("chat.postMessage")))
    await stream(client, update_interval=0.0).render(
        events(ReasoningDelta("hmm"), posted, ToolStarted("c1", "web_search", label), done(""))
    )
    first = fake_slack.calls_of("chat.postMessage")[0].args["text"]
    assert first == "_Thinking…_"
    texts = [c.args["text"] for c in fake_slack.calls_of("chat.update")]
    assert any(label in t for t in texts)
    [msg] = answer_messages(fake_slack)
    assert label not in msg.text and "Thinking" not in msg.text
    assert "empty answer" in msg.text


async def test_stream_expiry_continues_in_a_new_message_where_it_stopped(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("chat.appendStream", "message_not_in_streaming_state")
    started = until(fake_slack, lambda: bool(fake_slack.calls_of("chat.startStream")))
    out = await stream(client, interval=0.0).render(
        events(
            TextDelta("Part one. "),
            started,
            TextDelta("Part two. "),
            TextDelta("Part three."),
            done("Part one. Part two. Part three."),
        )
    )
    assert out.fell_back
    first, second = answer_messages(fake_slack)
    assert first.text == "Part one. "
    assert visible(second) == "Part two. Part three."
    assert action_ids(second) == [FEEDBACK_ACTION]
    assert out.messages == [first.ts, second.ts]


async def test_stop_failing_posts_the_end(client: AsyncWebClient, fake_slack: FakeSlack) -> None:
    fake_slack.fail("chat.stopStream", "internal_error")
    started = until(fake_slack, lambda: bool(fake_slack.calls_of("chat.startStream")))
    await stream(client).render(
        events(TextDelta("Start. "), started, TextDelta("End."), done("Start. End."))
    )
    first, second = answer_messages(fake_slack)
    assert (first.text, visible(second)) == ("Start. ", "End.")
    assert action_ids(second) == [FEEDBACK_ACTION]


def code_answer() -> str:
    prose = "".join(f"Paragraph {i} explains a step in some detail.\n\n" for i in range(12))
    code = "```python\n" + "".join(f"print('line {i}')\n" for i in range(60)) + "```\n\n"
    return prose + code + "That is all."


def assert_split_cleanly(texts: list[str], limit: int, original: str) -> None:
    for text in texts:
        assert len(text) <= limit
        assert open_fence(text) is None, text  # no message ends inside a code block
        for line in text.splitlines():  # cuts inside code fall at line ends
            assert not line.startswith("print(") or line.endswith("')"), line
    squashed = "".join("".join(texts).split())
    expected = "".join(original.split())
    # Only fence lines are added at cuts inside code; nothing is lost or repeated.
    assert squashed.replace("```python", "").replace("```", "") == expected.replace(
        "```python", ""
    ).replace("```", "")


@pytest.mark.parametrize("mode", ["stream", "post"])
async def test_long_answers_continue_in_new_messages_at_clean_boundaries(
    client: AsyncWebClient, fake_slack: FakeSlack, mode: str
) -> None:
    if mode == "post":
        fake_slack.fail("chat.startStream", "not_allowed_token_type", times=-1)
    limits = Limits(stream_call=120, stream_message=600, post_message=500)
    text = code_answer()
    out = await stream(client, limits=limits, interval=0.0, update_interval=0.0).render(
        events(*deltas(text, 40), done(text))
    )
    msgs = answer_messages(fake_slack)
    assert len(msgs) >= 3 and out.messages == [m.ts for m in msgs]
    limit = limits.stream_message if mode == "stream" else limits.post_message
    assert_split_cleanly([visible(m) for m in msgs], limit, text)
    assert all(not action_ids(m) for m in msgs[:-1])
    assert action_ids(msgs[-1]) == [FEEDBACK_ACTION]
    if mode == "stream":
        for call in fake_slack.calls:
            for chunk in call.args.get("chunks") or []:
                assert len(chunk.get("text", "")) <= limits.stream_call


async def test_cut_off_answer_keeps_the_text_with_a_notice_and_retry(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    out = await stream(client).render(
        events(
            TextDelta("Here is the code:\n\n```python\nprint(1)\n"),
            TurnFailed(StreamCut("cut"), "partial", "t9"),
        )
    )
    assert isinstance(out.end, TurnFailed)
    [msg] = answer_messages(fake_slack)
    assert msg.text.startswith("Here is the code:\n\n```python\nprint(1)\n```")
    assert msg.text.endswith(f"_{StreamCut.user_message}_")
    assert open_fence(msg.text) is None
    assert action_ids(msg) == [RETRY_ACTION]
    ref = TurnRef.loads(msg.blocks[0]["elements"][0]["value"])
    assert ref == TurnRef("C1", TARGET.thread_ts, "t9")


async def test_failure_before_any_text_shows_the_error(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    await stream(client).render(
        events(ReasoningDelta("..."), TurnFailed(UpstreamDown("503"), "", "t2"))
    )
    [msg] = answer_messages(fake_slack)
    assert msg.text == f"_{UpstreamDown.user_message}_"
    assert ("thinking-1", "error") in [(t["id"], t["status"]) for t in tasks(fake_slack)]
    assert action_ids(msg) == [RETRY_ACTION]


async def test_an_engine_stream_without_an_end_still_finishes_the_message(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    async def broken() -> AsyncIterator[EngineEvent]:
        yield TextDelta("Half an ans")
        raise RuntimeError("bug")

    out = await stream(client).render(broken())
    assert isinstance(out.end, TurnFailed)
    [msg] = answer_messages(fake_slack)
    assert msg.text.startswith("Half an ans") and action_ids(msg) == [RETRY_ACTION]


async def test_slack_refusing_everything_is_reported_not_raised(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    for method in ("chat.startStream", "chat.postMessage"):
        fake_slack.fail(method, "channel_not_found", times=-1)
    out: Rendered = await stream(client).render(events(TextDelta("Hi"), done("Hi")))
    assert not out.delivered and out.messages == []


async def test_cancelling_stops_the_engine_stream(client: AsyncWebClient) -> None:
    started, closed = asyncio.Event(), asyncio.Event()

    async def endless() -> AsyncIterator[EngineEvent]:
        try:
            yield TextDelta("x")
            started.set()
            await asyncio.Event().wait()
            yield TextDelta("never")
        finally:
            closed.set()

    task = asyncio.create_task(stream(client).render(endless()))
    await started.wait()  # the engine's stream is running: cancelling must close it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_the_answer_waits_for_the_surfaces_first_calls(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    """The assistant pane's status and title calls run beside the engine; the answer's
    first Slack call comes after them."""
    released = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        await released.wait()
        order.append("first calls done")

    async def release() -> None:
        order.append(f"slack calls so far: {len(fake_slack.calls)}")
        released.set()

    await stream(client, first=first()).render(events(TextDelta("Hi"), release, done("Hi")))
    assert order == ["slack calls so far: 0", "first calls done"]
    assert answer_messages(fake_slack)[0].text == "Hi"
