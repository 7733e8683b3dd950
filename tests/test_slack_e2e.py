"""The Slack surfaces end to end: signed events and interactions into the running bot, the
real engine and Redis behind it, the fake DeepSeek answering and the fake Slack showing what
people would see."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.contracts.errors import BalanceExhausted, RateLimited, StoreDown, StreamCut, UpstreamDown
from bot.slack.blocks import FEEDBACK_ACTION, REASONING_ACTION, RETRY_ACTION
from bot.slack.format import open_fence
from bot.store import keys
from tests import slack_sender
from tests.conftest import RunningBot, free_port, make_settings, settle, start_bot, stop_bot
from tests.fakes.deepseek import FakeDeepSeek, error_reply, text_reply, tool_reply
from tests.fakes.slack import BOT_ID, BOT_USER, FakeSlack, Message

_ids = itertools.count(1)


def mention(msg: Message, *, user: str = "U1") -> dict[str, Any]:
    """A mention as Slack delivers a person's message: with a client message id."""
    return slack_sender.mention(msg, user=user, client_msg_id=f"cm-{next(_ids)}")


def message(msg: Message, *, channel_type: str = "channel", **extra: Any) -> dict[str, Any]:
    event = {
        "type": "message",
        "user": msg.user,
        "text": msg.text,
        "ts": msg.ts,
        "channel": msg.channel,
        "channel_type": channel_type,
        "event_ts": msg.ts,
        "client_msg_id": f"cm-{next(_ids)}",
        "team": "T1",
    }
    if msg.thread_ts:
        event["thread_ts"] = msg.thread_ts
    event.update(extra)
    return event


def visible(msg: Message) -> str:
    md = [b["text"] for b in msg.blocks if b.get("type") == "markdown"]
    return "".join(md) if md else msg.text


def action_ids(msg: Message) -> list[str]:
    return [e.get("action_id", "") for b in msg.blocks for e in b.get("elements", [])]


def finished(fake: FakeSlack, channel: str, thread_ts: str, count: int = 1) -> Any:
    """True once `count` answers in the thread carry their closing buttons."""

    def check() -> bool:
        ends = [m for m in fake.bot_replies(channel, thread_ts) if action_ids(m)]
        return len(ends) >= count

    return check


async def answered(bot: RunningBot, channel: str, thread_ts: str, count: int = 1) -> list[Message]:
    """Wait until the bot finished `count` answers in the thread (and its work is done)."""
    fake = bot.fake_slack
    await fake.wait_for(finished(fake, channel, thread_ts, count))
    await bot.app.drain(timeout=10)
    return fake.bot_replies(channel, thread_ts)


@asynccontextmanager
async def running(
    fake_slack: FakeSlack,
    fake_deepseek: FakeDeepSeek,
    redis: Redis,
    redis_url: str,
    **overrides: Any,
) -> AsyncIterator[RunningBot]:
    """The bot with settings of its own (the `bot` fixture takes the defaults)."""
    settings = make_settings(fake_slack, fake_deepseek, redis_url=redis_url, **overrides)
    bot, runner = await start_bot(settings, redis, fake_slack, fake_deepseek)
    try:
        yield bot
    finally:
        await stop_bot(bot, runner)


# --- mentions -------------------------------------------------------------------------------


async def test_mention_streams_an_answer_into_the_thread(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("Redis Streams are an append-only log.", reasoning="Think about logs."))
    top = fake.add_message("C1", f"<@{BOT_USER}> what are <@U2>'s favourite redis streams?")
    resp = await bot.slack.event(mention(top))
    assert resp.status_code == 200

    [answer] = await answered(bot, "C1", top.ts)
    assert answer.thread_ts == top.ts
    assert answer.text == "Redis Streams are an append-only log."
    assert action_ids(answer) == [REASONING_ACTION, FEEDBACK_ACTION]
    start = fake.calls_of("chat.startStream")[0].args
    assert (start["recipient_team_id"], start["recipient_user_id"]) == ("T1", "U1")

    [request] = ds.requests
    question = request["messages"][-1]["content"]
    assert question.startswith("[Thread started 2023-11-14 in #chan-c1]")
    assert question.endswith("Alice: what are @Bob's favourite redis streams?")
    assert "Slack renders standard Markdown" in request["messages"][0]["content"]
    assert "Think about logs." not in json.dumps([m.as_slack() for m in fake.messages.values()])


async def test_follow_up_in_the_thread_needs_no_mention(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("First answer."), text_reply("Second answer."))
    top = fake.add_message("C1", f"<@{BOT_USER}> first question")
    await bot.slack.event(mention(top))
    await answered(bot, "C1", top.ts)

    follow = fake.add_message("C1", "and a follow-up", user="U2", thread_ts=top.ts)
    await bot.slack.event(message(follow))
    replies = await answered(bot, "C1", top.ts, count=2)
    assert [r.text for r in replies] == ["First answer.", "Second answer."]
    sent = ds.requests[1]["messages"]
    assert sent[-1]["content"] == "Bob: and a follow-up"
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]


async def test_follow_ups_can_be_turned_off(
    fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> None:
    async with running(fake_slack, fake_deepseek, redis, redis_url, answer_follow_ups=False) as bot:
        top = fake_slack.add_message("C1", f"<@{BOT_USER}> q")
        await bot.slack.event(mention(top))
        await answered(bot, "C1", top.ts)
        follow = fake_slack.add_message("C1", "more", thread_ts=top.ts)
        await bot.slack.event(message(follow))
        await settle()
    assert len(fake_deepseek.requests) == 1


async def test_thread_messages_where_the_bot_never_spoke_are_ignored(bot: RunningBot) -> None:
    fake = bot.fake_slack
    top = fake.add_message("C1", "people talking")
    reply = fake.add_message("C1", "among themselves", thread_ts=top.ts)
    for msg in (top, reply):
        assert (await bot.slack.event(message(msg))).status_code == 200
    await settle()
    assert bot.fake_deepseek.requests == []


async def test_mention_in_a_thread_it_never_saw_rebuilds_context_from_slack(
    bot: RunningBot,
) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    top = fake.add_message("C1", "Should we use Redis or Postgres for the queue?", user="U2")
    fake.add_message("C1", "Redis, we already run it.", user="U1", thread_ts=top.ts)
    ask = fake.add_message("C1", f"<@{BOT_USER}> what do you think?", thread_ts=top.ts)
    await bot.slack.event(mention(ask))
    await answered(bot, "C1", top.ts)
    sent = ds.requests[0]["messages"]
    assert sent[1] == {
        "role": "user",
        "content": "Bob: Should we use Redis or Postgres for the queue?\n\n"
        "Alice: Redis, we already run it.",
    }
    assert sent[-1]["content"] == "Alice: what do you think?"


# --- DMs and the assistant pane ---------------------------------------------------------------


async def test_direct_message_is_answered_in_a_thread(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("Hi Alice."))
    dm = fake.add_message("D1", "hello there")
    await bot.slack.event(message(dm, channel_type="im"))
    [answer] = await answered(bot, "D1", dm.ts)
    assert answer.thread_ts == dm.ts and answer.text == "Hi Alice."
    question = ds.requests[0]["messages"][-1]["content"]
    assert question == "[Thread started 2023-11-14 in a direct message]\n\nhello there"


async def test_shared_text_file_is_read_into_the_question(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    info = fake.add_file("notes.py", b"print('hi')\n")
    dm = fake.add_message("D1", "what does this do?")
    await bot.slack.event(message(dm, channel_type="im", subtype="file_share", files=[info]))
    await answered(bot, "D1", dm.ts)
    question = ds.requests[0]["messages"][-1]["content"]
    assert "what does this do?" in question
    assert "notes.py" in question and "print('hi')" in question


async def test_assistant_thread_started_sets_suggested_prompts(bot: RunningBot) -> None:
    fake = bot.fake_slack
    event = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1",
            "channel_id": "D1",
            "thread_ts": "1700000000.000900",
            "context": {},
        },
        "event_ts": "1700000000.000901",
    }
    assert (await bot.slack.event(event)).status_code == 200
    await fake.wait_for(lambda: bool(fake.calls_of("assistant.threads.setSuggestedPrompts")))
    call = fake.calls_of("assistant.threads.setSuggestedPrompts")[0].args
    assert call["channel_id"] == "D1" and call["thread_ts"] == "1700000000.000900"
    assert len(call["prompts"]) >= 2 and all(p["message"] for p in call["prompts"])


async def test_assistant_message_sets_status_title_and_answers(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    label_tool = tool_reply([("web_search", {"query": "redis 8 release"})])
    ds.push(label_tool, text_reply("Redis 8 shipped in 2025."))
    root = "1700000000.000900"
    ask = fake.add_message("D1", "When did Redis 8 ship? Asking for a friend.", thread_ts=root)
    await bot.slack.event(message(ask, channel_type="im"))
    [answer] = await answered(bot, "D1", root)
    assert answer.text == "Redis 8 shipped in 2025."
    statuses = [c.args for c in fake.calls_of("assistant.threads.setStatus")]
    assert statuses[0]["status"] == "is thinking…" and statuses[0]["loading_messages"]
    title = fake.calls_of("assistant.threads.setTitle")[0].args
    assert title["title"] == "When did Redis 8 ship? Asking for a friend."
    # A second question in the same thread does not rename it.
    ds.push(text_reply("Yes."))
    again = fake.add_message("D1", "Really?", thread_ts=root)
    await bot.slack.event(message(again, channel_type="im"))
    await answered(bot, "D1", root, count=2)
    assert len(fake.calls_of("assistant.threads.setTitle")) == 1


# --- streaming fallbacks and long answers ------------------------------------------------------


async def test_streaming_unavailable_falls_back_to_a_posted_message(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    fake.fail("chat.startStream", "not_allowed_token_type", times=-1)
    ds.push(text_reply("Posted, not streamed."))
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    await bot.slack.event(mention(top))
    [answer] = await answered(bot, "C1", top.ts)
    assert visible(answer) == "Posted, not streamed."
    assert fake.calls_of("chat.postMessage")


async def test_stream_expiry_continues_in_a_new_message(
    fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> None:
    fake_slack.fail("chat.appendStream", "message_not_in_streaming_state", times=-1)
    # Text keeps arriving after the first words, and every batch goes out at once.
    fake_deepseek.push(text_reply("One. Two. Three. Four.", pieces=4, chunk_delay=0.02))
    async with running(fake_slack, fake_deepseek, redis, redis_url, slack_update_interval=0) as bot:
        top = fake_slack.add_message("C1", f"<@{BOT_USER}> count")
        await bot.slack.event(mention(top))
        replies = await answered(bot, "C1", top.ts)
    assert "".join(visible(m) for m in replies) == "One. Two. Three. Four."
    assert len(replies) == 2 and action_ids(replies[-1]) == [FEEDBACK_ACTION]
    assert fake_slack.calls_of("chat.appendStream")


async def test_long_answer_continues_in_new_messages(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    code = "```python\n" + "".join(f"x_{i} = {i}\n" for i in range(3000)) + "```\n"
    prose = "".join(f"Paragraph {i}. " * 20 + "\n\n" for i in range(40))
    text = prose + code + "Done."
    assert len(text) > 50_000
    ds.push(text_reply(text, pieces=50))
    top = fake.add_message("C1", f"<@{BOT_USER}> write a lot")
    await bot.slack.event(mention(top))
    replies = await answered(bot, "C1", top.ts)
    assert len(replies) >= 2
    for reply in replies:
        assert len(reply.text) <= 40_000 and open_fence(reply.text) is None
    for call in fake.calls:
        for chunk in call.args.get("chunks") or []:
            assert len(chunk.get("text", "")) <= 12_000
    joined = "".join(r.text for r in replies)
    assert (
        joined.replace("```python\n", "").replace("```", "").split()
        == text.replace("```python\n", "").replace("```", "").split()
    )


# --- failures are visible ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (error_reply(429, "slow down", retry_after=0), RateLimited),
        (error_reply(500, "boom"), UpstreamDown),
        (error_reply(402, "Insufficient Balance"), BalanceExhausted),
    ],
    ids=["429", "500", "402"],
)
async def test_upstream_errors_end_in_a_visible_message(
    bot: RunningBot, reply: Any, error: type[Exception]
) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(*[reply] * 5)  # more than the client's retries
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    await bot.slack.event(mention(top))
    [answer] = await answered(bot, "C1", top.ts)
    assert answer.text == f"_{error.user_message}_"  # type: ignore[attr-defined]
    assert action_ids(answer) == [RETRY_ACTION]
    assert "boom" not in answer.text and "Insufficient" not in answer.text


async def test_balance_exhausted_tells_admins_once_an_hour(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(*[error_reply(402, "Insufficient Balance")] * 2)
    for _ in range(2):
        top = fake.add_message("C1", f"<@{BOT_USER}> hi")
        await bot.slack.event(mention(top))
        await answered(bot, "C1", top.ts)
    dms = [c.args for c in fake.calls_of("chat.postMessage") if c.args["channel"] == "DUADMIN"]
    assert len(dms) == 1
    assert "balance is exhausted" in dms[0]["text"] and "sk-" not in dms[0]["text"]


async def test_store_down_still_ends_in_a_visible_message(
    fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> None:
    """Redis unreachable: no dedupe, no memory, but the person gets a clear sentence (and a
    Retry button), and admins hear of it once."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(fake_slack, fake_deepseek, redis_url=dead)
    bot, runner = await start_bot(settings, None, fake_slack, fake_deepseek)
    try:
        for _ in range(2):
            top = fake_slack.add_message("C1", f"<@{BOT_USER}> hi")
            await bot.slack.event(mention(top))
            [answer] = await answered(bot, "C1", top.ts)
            assert answer.text == f"_{StoreDown.user_message}_"
            assert action_ids(answer) == [RETRY_ACTION]
    finally:
        await bot.slack.aclose()
        await bot.app.drain(timeout=5)
        await bot.app.deps.aclose()
        await runner.cleanup()
    notices = [c for c in fake_slack.calls_of("chat.postMessage") if c.args["channel"] == "DUADMIN"]
    assert len(notices) == 1
    assert fake_deepseek.requests == []


async def test_mid_stream_disconnect_keeps_the_partial_answer(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("The first half of a long answer, and then", pieces=6, disconnect_after=4))
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    await bot.slack.event(mention(top))
    [answer] = await answered(bot, "C1", top.ts)
    assert answer.text.startswith("The first half")
    assert answer.text.endswith(f"_{StreamCut.user_message}_")
    assert action_ids(answer) == [RETRY_ACTION]


async def test_retry_runs_the_question_again(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(*[error_reply(500, "boom")] * 3, text_reply("Now it works."))
    top = fake.add_message("C1", f"<@{BOT_USER}> please answer")
    await bot.slack.event(mention(top))
    [failed] = await answered(bot, "C1", top.ts)
    button = failed.blocks[0]["elements"][0]
    click = {
        "type": "block_actions",
        "user": {"id": "U2", "team_id": "T1"},
        "channel": {"id": "C1"},
        "message": {"ts": failed.ts, "text": failed.text, "blocks": failed.blocks},
        "trigger_id": "trig-1",
        "actions": [{"action_id": RETRY_ACTION, "value": button["value"], "type": "button"}],
    }
    assert (await bot.slack.interaction(click)).status_code == 200
    assert (await bot.slack.interaction(click)).status_code == 200  # a double click
    replies = await answered(bot, "C1", top.ts, count=2)
    assert replies[-1].text == "Now it works."
    assert RETRY_ACTION not in action_ids(replies[0])
    assert ds.requests[-1]["messages"][-1]["content"] == "Bob: please answer"
    await settle()
    assert len(ds.requests) == 4


# --- buttons --------------------------------------------------------------------------------


async def test_feedback_is_counted_per_model_once_per_person(bot: RunningBot, redis: Redis) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("An answer."))
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    await bot.slack.event(mention(top))
    [answer] = await answered(bot, "C1", top.ts)
    feedback = answer.blocks[-1]["elements"][0]

    async def vote(user: str, button: str) -> None:
        click = {
            "type": "block_actions",
            "user": {"id": user, "team_id": "T1"},
            "channel": {"id": "C1"},
            "message": {"ts": answer.ts},
            "actions": [
                {
                    "action_id": FEEDBACK_ACTION,
                    "type": "feedback_buttons",
                    "value": feedback[button]["value"],
                }
            ],
        }
        assert (await bot.slack.interaction(click)).status_code == 200
        await settle()

    await vote("U1", "positive_button")
    await vote("U1", "positive_button")  # the same vote again counts once
    await vote("U2", "positive_button")
    await vote("U2", "negative_button")  # a changed mind moves the vote
    model = bot.app.deps.settings.model_id("flash")
    assert await redis.hgetall(keys.feedback("T1", model)) == {"up": "1", "down": "1"}


async def test_show_reasoning_opens_a_modal_with_the_stored_reasoning(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    reasoning = "Step one. " * 800  # longer than one section block
    ds.push(text_reply("Answer.", reasoning=reasoning))
    top = fake.add_message("C1", f"<@{BOT_USER}> think hard")
    await bot.slack.event(mention(top))
    [answer] = await answered(bot, "C1", top.ts)
    button = answer.blocks[0]["elements"][0]
    click = {
        "type": "block_actions",
        "user": {"id": "U1", "team_id": "T1"},
        "channel": {"id": "C1"},
        "trigger_id": "trig-2",
        "actions": [{"action_id": REASONING_ACTION, "value": button["value"], "type": "button"}],
    }
    await bot.slack.interaction(click)
    await fake.wait_for(lambda: bool(fake.views))
    view = fake.views[0]
    texts = [b["text"]["text"] for b in view["blocks"]]
    assert len(texts) >= 2 and all(len(t) <= 3000 for t in texts)
    assert " ".join(texts).split() == reasoning.split()


# --- exactly once, and what is ignored ------------------------------------------------------


async def test_duplicate_delivery_is_answered_once(bot: RunningBot) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    top = fake.add_message("C1", f"<@{BOT_USER}> once please")
    event = mention(top)
    await bot.slack.event(event, event_id="EvSame")
    await bot.slack.event(event, event_id="EvSame", retry_num=1)  # Slack's retry
    await bot.slack.event(event, event_id="EvOther")  # same message, another delivery
    await answered(bot, "C1", top.ts)
    await settle()
    assert len(ds.requests) == 1
    assert len(fake.bot_replies("C1", top.ts)) == 1


async def test_channel_message_with_a_mention_is_left_to_app_mention(bot: RunningBot) -> None:
    fake = bot.fake_slack
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    await bot.slack.event(message(top))  # message.channels copy of a mention
    await settle()
    assert bot.fake_deepseek.requests == []


@pytest.mark.parametrize(
    "extra",
    [
        {"bot_id": BOT_ID, "user": BOT_USER},  # our own message
        {"bot_id": "BOTHER", "user": "UOTHERBOT"},  # another bot
        {"subtype": "bot_message", "bot_id": "BOTHER"},
        {"subtype": "message_changed", "message": {"text": "edited"}},
        {"subtype": "message_deleted"},
        {"subtype": "channel_join"},
    ],
    ids=["self", "other-bot", "bot-message", "edit", "delete", "join"],
)
async def test_bots_and_subtypes_are_acked_and_ignored(
    bot: RunningBot, extra: dict[str, Any]
) -> None:
    fake = bot.fake_slack
    dm = fake.add_message("D1", "something")
    resp = await bot.slack.event(message(dm, channel_type="im", **extra))
    assert resp.status_code == 200
    await settle()
    assert bot.fake_deepseek.requests == []
    assert fake.bot_replies("D1", dm.ts) == []
