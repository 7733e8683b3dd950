"""Drills through the Slack path: each kind of upstream fault of test_upstream_drills, and
Slack's own faults (429 with Retry-After on appendStream and chat.update, stream expiry,
chat.postMessage failing), each through a signed mention into the running bot. Every turn
ends in a finished, visible message (or, when Slack takes no message at all, a clear log
line); no thread lock, waiter or listener task is left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from bot.contracts.errors import UpstreamError
from bot.contracts.thread import ThreadRef
from bot.slack.blocks import FEEDBACK_ACTION, RETRY_ACTION
from tests.conftest import RunningBot, make_settings, start_bot, stop_bot
from tests.drills.test_upstream_drills import FAULTS, TOTAL_TIMEOUT, leftover_keys
from tests.fakes.deepseek import FakeDeepSeek, text_reply
from tests.fakes.slack import BOT_USER, FakeSlack, Message
from tests.slack_sender import mention


def user_messages() -> set[str]:
    """Every sentence an upstream failure may show a person."""
    found, todo = set(), [UpstreamError]
    while todo:
        cls = todo.pop()
        found.add(cls.user_message)
        todo.extend(cls.__subclasses__())
    return found


@pytest.fixture
async def slack_bot(
    fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> AsyncIterator[RunningBot]:
    settings = make_settings(
        fake_slack,
        fake_deepseek,
        redis_url=redis_url,
        deepseek_max_retries=1,
        deepseek_total_timeout=TOTAL_TIMEOUT,
        slack_update_interval=0.05,
    )
    bot, runner = await start_bot(settings, redis, fake_slack, fake_deepseek)
    yield bot
    await stop_bot(bot, runner, drain_s=10)


def action_ids(msg: Message) -> list[str]:
    return [e.get("action_id", "") for b in msg.blocks for e in b.get("elements", [])]


def shown(msg: Message) -> str:
    md = [b["text"] for b in msg.blocks if b.get("type") == "markdown"]
    return "".join(md) if md else msg.text


async def ask(bot: RunningBot, text: str = "hi") -> tuple[Message, list[Message]]:
    """Mention the bot; wait until the answer carries its closing buttons and the bot's work
    is done. Returns the question and the bot's messages in its thread."""
    fake = bot.fake_slack
    top = fake.add_message("C1", f"<@{BOT_USER}> {text}")
    assert (await bot.slack.event(mention(top))).status_code == 200
    await fake.wait_for(lambda: any(action_ids(m) for m in fake.bot_replies("C1", top.ts)))
    await bot.app.drain(timeout=10)
    return top, fake.bot_replies("C1", top.ts)


async def assert_clean(
    bot: RunningBot, redis: Redis, top: Message, *, streams_closed: bool = True
) -> None:
    assert await leftover_keys(redis, ThreadRef("T1", "C1", top.ts)) == []
    assert not bot.app.deps.inflight
    if streams_closed:  # (an expired stream is Slack's to close; the fake keeps it open)
        assert [m.ts for m in bot.fake_slack.bot_replies("C1", top.ts) if m.streaming] == []


# One of each kind (the engine drills run all 18): rate limit, server error page, hang, cut
# before and after text, garbage, error chunk, truncated and empty streams.
SLACK_FAULTS = [
    "429",
    "502_html",
    "keepalive_hang",
    "cut_before_text",
    "cut_mid_text",
    "not_json",
    "error_chunk",
    "no_finish_no_done",
    "empty_200",
]


@pytest.mark.parametrize("fault", SLACK_FAULTS)
async def test_upstream_fault_ends_in_a_visible_message(
    fault: str, slack_bot: RunningBot, redis: Redis
) -> None:
    make, _ = FAULTS[fault]
    slack_bot.fake_deepseek.push(make(), make())
    top, replies = await ask(slack_bot)
    last = replies[-1]
    assert action_ids(last) == [RETRY_ACTION]
    assert any(m in shown(last) for m in user_messages()), shown(last)
    assert "Traceback" not in shown(last) and "sk-" not in shown(last)
    await assert_clean(slack_bot, redis, top)


ANSWER = "Alpha. Bravo. Charlie. Delta. Echo. Foxtrot."


def slow_answer() -> Any:
    # Spread over ~0.3 s so the renderer makes several calls (interval 0.05 s).
    return text_reply(ANSWER, pieces=6, chunk_delay=0.05)


def joined(replies: list[Message]) -> str:
    """The answer as a person reads it across messages (a fallback continues mid-word)."""
    return "".join(shown(m) for m in replies)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "error", "status", "setup"),
    [
        ("chat.appendStream", "ratelimited", 429, None),
        ("chat.update", "ratelimited", 429, "no_stream"),
        ("chat.appendStream", "message_not_in_streaming_state", 200, None),
        ("chat.startStream", "internal_error", 500, None),
        ("chat.postMessage", "internal_error", 200, "no_stream"),
    ],
    ids=[
        "appendStream_429",
        "update_429",
        "stream_expired",
        "startStream_500",
        "postMessage_fails_once",
    ],
)
async def test_slack_fault_still_ends_visibly(
    method: str,
    error: str,
    status: int,
    setup: str | None,
    slack_bot: RunningBot,
    redis: Redis,
) -> None:
    fake = slack_bot.fake_slack
    if setup == "no_stream":
        fake.fail("chat.startStream", "not_allowed_token_type", times=-1)
    retry_after = 1 if status == 429 else None
    times = -1 if error == "message_not_in_streaming_state" else 1
    fake.fail(method, error, status=status, times=times, retry_after=retry_after)
    slack_bot.fake_deepseek.push(slow_answer())
    top, replies = await ask(slack_bot)
    assert joined(replies) == ANSWER  # the whole answer, once, in order
    assert action_ids(replies[-1]) == [FEEDBACK_ACTION]
    assert any(c.method == method for c in fake.calls)
    expired = error == "message_not_in_streaming_state"
    await assert_clean(slack_bot, redis, top, streams_closed=not expired)


async def test_slack_taking_no_message_is_logged(slack_bot: RunningBot, redis: Redis) -> None:
    """Streaming refused and every chat.postMessage failing: nothing can be shown, so the
    bot says so in its log (and the thread is not left locked)."""
    fake = slack_bot.fake_slack
    fake.fail("chat.startStream", "not_allowed_token_type", times=-1)
    fake.fail("chat.postMessage", "channel_not_found", times=-1)
    slack_bot.fake_deepseek.push(text_reply("Nobody will see this."))
    top = fake.add_message("C1", f"<@{BOT_USER}> hi")
    with structlog.testing.capture_logs() as logs:
        await slack_bot.slack.event(mention(top))
        await fake.wait_for(lambda: any(e["event"] == "answer_undeliverable" for e in logs))
        await slack_bot.app.drain(timeout=10)
    assert fake.bot_replies("C1", top.ts) == []
    undeliverable = [e for e in logs if e["event"] == "answer_undeliverable"]
    assert undeliverable[0]["log_level"] == "error" and undeliverable[0]["channel"] == "C1"
    await assert_clean(slack_bot, redis, top)
