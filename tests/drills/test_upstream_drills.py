"""Drills: the upstream misbehaves (429 storms, 5xx, keep-alive hangs, cut streams, garbage).

Every turn must end with TurnDone or a TurnFailed whose error carries a user_message; no
asyncio task may be left behind; the thread's lock and waiter keys must be gone; and the next
turn in the same thread must work (the stored history stayed replayable).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.contracts.errors import StoreDown
from bot.contracts.events import EngineEvent, TurnDone, TurnFailed
from bot.contracts.stream import TextDelta
from bot.contracts.thread import ThreadRef
from bot.core.engine import Turn
from bot.deps import Deps, build_deps
from bot.store import keys
from tests.conftest import bot_tasks, make_settings
from tests.fakes.deepseek import FakeDeepSeek, Reply, _chunk, error_reply, text_reply

THREAD = ThreadRef("T1", "C1", "1700000000.000001")
TOTAL_TIMEOUT = 0.5


@pytest.fixture
async def deps(redis: Redis, redis_url: str, fake_deepseek: FakeDeepSeek) -> AsyncIterator[Deps]:
    settings = make_settings(
        None,
        fake_deepseek,
        redis_url=redis_url,
        deepseek_max_retries=1,
        deepseek_total_timeout=TOTAL_TIMEOUT,
        deepseek_read_timeout=5.0,
        log_level="CRITICAL",
    )
    # The production client (bot.store.connection.open_redis), so its connection pool is what
    # is drilled.
    built = build_deps(settings)
    yield built
    await built.aclose()


async def run(deps: Deps, text: str, thread: ThreadRef = THREAD) -> list[EngineEvent]:
    return [e async for e in deps.engine.run(Turn(thread, "U1", text))]


async def let_cancellations_run() -> None:
    """Let cancelled tasks finish being cancelled (a few loop turns, no wall-clock wait).
    Unlike `settle`, it does not wait for tasks: a task still there afterwards leaked."""
    for _ in range(5):
        await asyncio.sleep(0)


async def leftover_keys(redis: Redis, thread: ThreadRef) -> list[str]:
    found = [
        k for k in (keys.thread_lock(thread), keys.thread_waiters(thread)) if await redis.exists(k)
    ]
    found += [k async for k in redis.scan_iter(match=keys.thread_waiter(thread, "*"))]
    return found


def assert_ended(events: list[EngineEvent]) -> TurnDone | TurnFailed:
    assert events, "the turn yielded nothing"
    last = events[-1]
    assert isinstance(last, TurnDone | TurnFailed), last
    assert not any(isinstance(e, TurnDone | TurnFailed) for e in events[:-1])
    if isinstance(last, TurnFailed):
        message = last.error.user_message
        assert message and "Traceback" not in message and "sk-" not in message
        shown = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert last.partial == shown  # the failure reports exactly what was shown
    return last


def raw(line: str) -> Reply:
    """A 200 SSE stream made of raw lines (garbage the client must survive)."""
    return Reply(chunks=[line])


# Each fault: the replies the fake serves (the first ones; `then` after), and what the turn
# may end with. The client retries once (settings above), so a fault is served twice.
FAULTS: dict[str, tuple[Callable[[], Reply], type[Any] | tuple[type[Any], ...]]] = {
    "429": (lambda: error_reply(429, "rate limited"), TurnFailed),
    "429_retry_after": (lambda: error_reply(429, "slow down", retry_after=0), TurnFailed),
    "500": (lambda: error_reply(500, "boom"), TurnFailed),
    "502_html": (
        lambda: Reply(status=502, raw_body=b"<html><body>Bad Gateway</body></html>"),
        TurnFailed,
    ),
    "503": (lambda: error_reply(503, "overloaded"), TurnFailed),
    "200_html_page": (
        lambda: Reply(raw_body=b"<!doctype html><title>login</title>", content_type="text/html"),
        TurnFailed,
    ),
    "keepalive_hang": (lambda: Reply(keepalive_for=TOTAL_TIMEOUT * 4), TurnFailed),
    "slow_first_token": (
        lambda: text_reply("late", first_token_delay=TOTAL_TIMEOUT * 4),
        TurnFailed,
    ),
    "cut_before_text": (lambda: text_reply("never shown", disconnect_after=1), TurnFailed),
    "cut_mid_text": (
        lambda: text_reply("a b c d e f g h", pieces=8, disconnect_after=4),
        TurnFailed,
    ),
    "not_json": (lambda: raw("data: {this is not json"), TurnFailed),
    "json_array": (lambda: raw("data: [1, 2, 3]"), TurnFailed),
    "wrong_shape": (lambda: raw('data: {"choices": "nope"}'), TurnFailed),
    "binary_junk": (lambda: raw("data: \x00\x01\ufffd\x7f"), TurnFailed),
    "error_chunk": (
        lambda: Reply(chunks=[{"error": {"message": "overloaded", "code": 503}}]),
        TurnFailed,
    ),
    "no_finish_no_done": (
        lambda: Reply(chunks=[_chunk({"content": "half"})], done=False),
        TurnFailed,
    ),
    "empty_200": (lambda: Reply(chunks=[], done=False), TurnFailed),
    "done_only": (lambda: Reply(chunks=[]), TurnFailed),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_fault_ends_cleanly(
    fault: str, deps: Deps, redis: Redis, fake_deepseek: FakeDeepSeek
) -> None:
    make, expected = FAULTS[fault]
    fake_deepseek.push(text_reply("Remember: the code word is heron."))
    assert isinstance((await run(deps, "first question"))[-1], TurnDone)

    before = bot_tasks()
    fake_deepseek.push(make(), make())
    last = assert_ended(await run(deps, "second question"))
    assert isinstance(last, expected)
    await let_cancellations_run()
    assert bot_tasks() - before == set()
    assert await leftover_keys(redis, THREAD) == []

    # The thread is not stuck and its history still replays: the next turn works.
    fake_deepseek.script.clear()
    fake_deepseek.push(text_reply("Still heron."))
    assert isinstance((await run(deps, "third question"))[-1], TurnDone)
    sent = fake_deepseek.requests[-1]["messages"]
    roles = [m["role"] for m in sent[1:]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]  # failed turn kept
    assert any("heron" in (m.get("content") or "") for m in sent if m["role"] == "assistant")


async def test_retryable_fault_then_success(deps: Deps, fake_deepseek: FakeDeepSeek) -> None:
    """One 503 (or a stream cut before any text) is retried: the person sees the answer."""
    fake_deepseek.push(error_reply(503), text_reply("Recovered."))
    last = assert_ended(await run(deps, "q1"))
    assert isinstance(last, TurnDone) and last.text == "Recovered."
    fake_deepseek.push(text_reply("x", disconnect_after=1), text_reply("Recovered again."))
    last = assert_ended(await run(deps, "q2"))
    assert isinstance(last, TurnDone) and last.text == "Recovered again."


async def test_cut_mid_text_keeps_partial(deps: Deps, fake_deepseek: FakeDeepSeek) -> None:
    """Text already shown is not silently retried: the failure carries it."""
    fake_deepseek.push(text_reply("one two three four", pieces=4, disconnect_after=3))
    last = assert_ended(await run(deps, "q"))
    assert isinstance(last, TurnFailed) and last.partial
    assert len(fake_deepseek.requests) == 1


@pytest.mark.slow
async def test_storm_across_threads(deps: Deps, redis: Redis, fake_deepseek: FakeDeepSeek) -> None:
    """40 threads at once, three turns each, while the upstream fails most requests in every
    way above: all 120 turns end, nothing is left behind, turns in a thread stay ordered."""
    faults = [make for make, _ in FAULTS.values() if make().keepalive_for == 0]
    counter = iter(range(1_000_000))

    def chaos() -> Reply:
        n = next(counter)
        if n % 4 == 0:
            return text_reply(f"ok {n}", pieces=3)
        return faults[n % len(faults)]()

    fake_deepseek.default = chaos  # type: ignore[assignment]
    # 120 turns polling their locks at once: past redis-py's default pool of 100 connections.
    threads = [ThreadRef("T1", "C1", f"1700000001.{i:06d}") for i in range(40)]
    before = bot_tasks()

    async def thread_turns(t: ThreadRef) -> list[EngineEvent]:
        # Three messages of one thread arrive together; the lock runs them in order.
        runs = [
            asyncio.create_task(
                collect(deps, Turn(t, "U1", f"{t.thread_ts} q{k}", order=1700000100.0 + k))
            )
            for k in range(3)
        ]
        results = await asyncio.gather(*runs)
        return [assert_ended(r) for r in results]

    ends = await asyncio.gather(*(thread_turns(t) for t in threads))
    finals = [e for per in ends for e in per]
    assert len(finals) == 120
    # Only the upstream was failing: no turn may fail for want of a Redis connection.
    assert [e for e in finals if isinstance(e, TurnFailed) and isinstance(e.error, StoreDown)] == []
    await let_cancellations_run()
    assert bot_tasks() - before == set()
    for t in threads:
        assert await leftover_keys(redis, t) == []
        asked = [
            r["messages"][-1]["content"]
            for r in fake_deepseek.requests
            if r["messages"][-1]["content"].startswith(t.thread_ts)
        ]
        # Turns ran one at a time, in message order (a turn may fail before its request is
        # sent, within the 0.5 s deadline, and retries repeat one).
        ks = [int(q.rsplit("q", 1)[1]) for q in asked]
        assert ks == sorted(ks)


async def collect(deps: Deps, turn: Turn) -> list[EngineEvent]:
    return [e async for e in deps.engine.run(turn)]
