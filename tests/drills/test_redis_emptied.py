"""Drill: Redis loses everything between two turns (flushed, a failover to an empty replica);
the next mention in the thread rebuilds the conversation from Slack and goes on."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.contracts.thread import ThreadRef
from bot.store import keys
from tests.conftest import RunningBot
from tests.fakes.deepseek import text_reply
from tests.fakes.slack import BOT_USER
from tests.slack_sender import mention


def closed(bot: RunningBot, root: str, count: int) -> bool:
    ends = [
        m
        for m in bot.fake_slack.bot_replies("C1", root)
        if any(b.get("type") in ("actions", "context_actions") for b in m.blocks)
    ]
    return len(ends) >= count


async def test_emptied_redis_rebuilds_the_thread_from_slack(bot: RunningBot, redis: Redis) -> None:
    fake, ds = bot.fake_slack, bot.fake_deepseek
    ds.push(text_reply("The code word is heron."))
    top = fake.add_message("C1", f"<@{BOT_USER}> remember the code word heron")
    await bot.slack.event(mention(top))
    await fake.wait_for(lambda: closed(bot, top.ts, 1))
    await bot.app.drain(timeout=10)
    assert await redis.exists(keys.history(ThreadRef("T1", "C1", top.ts)))

    await redis.flushdb()  # this database only: xdist workers may share the server

    ds.push(text_reply("It was heron."))
    follow = fake.add_message("C1", f"<@{BOT_USER}> what was the code word?", thread_ts=top.ts)
    await bot.slack.event(mention(follow))
    await fake.wait_for(lambda: closed(bot, top.ts, 2))
    await bot.app.drain(timeout=10)

    assert fake.calls_of("conversations.replies")
    sent = ds.requests[-1]["messages"]
    contents = [str(m.get("content") or "") for m in sent]
    assert any("remember the code word heron" in c for c in contents[:-1])
    assert any("The code word is heron." in c for c in contents[:-1])
    assert "what was the code word?" in contents[-1]
    # The rebuilt thread is stored again: the turn after needs no rebuild.
    assert await redis.llen(keys.history(ThreadRef("T1", "C1", top.ts))) >= 4
