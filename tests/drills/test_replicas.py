"""Drill: two bot processes (HTTP mode, as replicas behind a load balancer) and one Redis.

- The same event delivered to both (same event_id, as Slack retries do) is answered once.
- Two messages of one thread sent to different replicas are answered in order, the second
  with the first in its history.
- A replica killed (SIGKILL) mid-answer leaves no stuck thread: its lock expires
  (THREAD_LOCK_TTL, short here) and the other replica answers the next message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bot.contracts.thread import ThreadRef
from bot.store import keys
from tests.fakes.deepseek import FakeDeepSeek, text_reply
from tests.fakes.slack import FakeSlack
from tests.replica import Replica, start_replica
from tests.slack_sender import mention

pytestmark = pytest.mark.slow
LOCK_TTL = 2.0
WAIT = 30.0  # a bound, not a timing claim: fresh processes on a busy 2-core machine


@pytest.fixture
async def replicas(
    redis: Redis, redis_url: str, fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> AsyncIterator[tuple[Replica, Replica]]:
    env = {"THREAD_LOCK_TTL": str(LOCK_TTL), "DEEPSEEK_MAX_RETRIES": "0"}
    pair = await asyncio.gather(
        start_replica(fake_slack.url, fake_deepseek.url, redis_url, **env),
        start_replica(fake_slack.url, fake_deepseek.url, redis_url, **env),
    )
    yield pair[0], pair[1]
    for replica in pair:
        await replica.kill()


async def wait(
    fake: FakeSlack, deepseek: FakeDeepSeek, predicate: Any, timeout: float = WAIT
) -> None:
    """fake.wait_for, saying what Slack and DeepSeek saw when the condition is not met."""
    try:
        await fake.wait_for(predicate, timeout=timeout)
    except AssertionError as exc:
        calls = [(c.method, c.args.get("thread_ts") or c.args.get("ts")) for c in fake.calls]
        texts = [(m.text[:40], m.streaming) for m in fake.messages.values() if m.bot_id]
        detail = f"calls={calls} upstream={len(deepseek.requests)} bot={texts}"
        raise AssertionError(detail) from exc


def finished(fake: FakeSlack, channel: str, root: str, text: str) -> bool:
    return any(text in m.text and not m.streaming for m in fake.bot_replies(channel, root))


async def idle(*replicas: Replica) -> None:
    """Wait (bounded) until no replica has an answer in flight (their /healthz says so)."""
    async with httpx.AsyncClient() as http:
        for _ in range(1500):
            bodies = [(await http.get(f"{r.url}/healthz")).json() for r in replicas]
            if all(b["inflight"] == 0 for b in bodies):
                return
            await asyncio.sleep(0.02)
    raise AssertionError("replicas still busy")


async def test_two_replicas_answer_once_and_in_order(
    replicas: tuple[Replica, Replica], fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> None:
    a, b = replicas
    # 1. Slack's retry of one event reaches the other replica while the first delivery is
    #    being handled: one answer.
    fake_deepseek.push(text_reply("Only once.", chunk_delay=0.05))
    msg = fake_slack.add_message("C1", "<@UBOT> say it once")
    acks = await asyncio.gather(
        a.slack.event(mention(msg), event_id="EvSame"),
        b.slack.event(mention(msg), event_id="EvSame", retry_num=1),
        a.slack.event(mention(msg), event_id="EvSame", retry_num=2),
    )
    assert [r.status_code for r in acks] == [200, 200, 200]
    await wait(fake_slack, fake_deepseek, lambda: finished(fake_slack, "C1", msg.ts, "Only once."))
    await idle(a, b)
    assert len(fake_deepseek.requests) == 1
    assert len(fake_slack.bot_replies("C1", msg.ts)) == 1

    # 2. Two messages of one thread on different replicas: in order, with full history.
    fake_deepseek.push(
        text_reply("First answer: heron.", pieces=8, chunk_delay=0.1),
        text_reply("Second answer."),
    )
    first = fake_slack.add_message("C1", "<@UBOT> pick a bird")
    await a.slack.event(mention(first))
    await wait(fake_slack, fake_deepseek, lambda: len(fake_deepseek.requests) == 2)
    # The follow-up lands on the other replica while the first answer still streams.
    second = fake_slack.add_message("C1", "<@UBOT> which bird again?", thread_ts=first.ts)
    await b.slack.event(mention(second))
    await wait(
        fake_slack, fake_deepseek, lambda: finished(fake_slack, "C1", first.ts, "Second answer.")
    )
    await idle(a, b)

    assert len(fake_deepseek.requests) == 3
    sent = fake_deepseek.requests[2]["messages"]
    contents = [str(m.get("content") or "") for m in sent]
    assert any("pick a bird" in c for c in contents)
    assert any("First answer: heron." in c for c in contents)  # the whole first answer
    assert "which bird again?" in contents[-1]
    texts = [r.text for r in fake_slack.bot_replies("C1", first.ts)]  # in ts order
    firsts = [i for i, t in enumerate(texts) if "First answer: heron." in t]
    seconds = [i for i, t in enumerate(texts) if "Second answer." in t]
    assert len(firsts) == len(seconds) == 1 and firsts[0] < seconds[0]


async def test_replica_killed_mid_answer_leaves_no_stuck_thread(
    replicas: tuple[Replica, Replica],
    redis: Redis,
    fake_slack: FakeSlack,
    fake_deepseek: FakeDeepSeek,
) -> None:
    a, b = replicas
    fake_deepseek.push(
        text_reply("This answer never ends " * 20, pieces=40, chunk_delay=0.5),
        text_reply("Back in service."),
    )
    first = fake_slack.add_message("C1", "<@UBOT> long question")
    thread = ThreadRef("T1", "C1", first.ts)
    await a.slack.event(mention(first))
    await wait(
        fake_slack,
        fake_deepseek,
        lambda: any("never ends" in m.text for m in fake_slack.messages.values()),
    )
    assert await redis.exists(keys.thread_lock(thread))
    await a.kill()  # SIGKILL: no cleanup, the lock stays until it expires

    second = fake_slack.add_message("C1", "<@UBOT> are you there?", thread_ts=first.ts)
    await b.slack.event(mention(second))
    await wait(
        fake_slack,
        fake_deepseek,
        lambda: finished(fake_slack, "C1", first.ts, "Back in service."),
        timeout=LOCK_TTL + WAIT,
    )
    await idle(b)
    assert not await redis.exists(keys.thread_lock(thread))
    assert not await redis.exists(keys.thread_waiters(thread))
    assert [k async for k in redis.scan_iter(match=keys.thread_waiter(thread, "*"))] == []
    assert "are you there?" in str(fake_deepseek.requests[-1]["messages"][-1]["content"])
