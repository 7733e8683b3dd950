"""The conversation engine against real Redis and the fake DeepSeek server."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from bot.config import Settings
from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.stream import TextDelta
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import Tool, ToolContext, ToolFailure
from bot.core import prompt
from bot.core.engine import Engine, Turn
from bot.deps import Deps, build_deps
from bot.store import keys
from bot.store.claims import claim_once
from tests.conftest import make_settings
from tests.fakes.deepseek import FakeDeepSeek, Reply, error_reply, text_reply, tool_reply

THREAD = ThreadRef("T1", "C1", "1700000000.000001")


class EchoArgs(BaseModel):
    text: str


class Echo:
    """Test tools. `gate` lets two calls prove they run at the same time."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[str] = []

    def tools(self) -> list[Tool[Any]]:
        async def echo(args: EchoArgs, ctx: ToolContext) -> str:
            self.calls.append(args.text)
            return f"echo:{args.text}"

        async def wait_gate(args: EchoArgs, ctx: ToolContext) -> str:
            await self.gate.wait()
            return "gate passed"

        async def open_gate(args: EchoArgs, ctx: ToolContext) -> str:
            self.gate.set()
            return "gate opened"

        async def slow(args: EchoArgs, ctx: ToolContext) -> str:
            await asyncio.sleep(30)
            return "never"

        async def broken(args: EchoArgs, ctx: ToolContext) -> str:
            raise RuntimeError("secret internals")

        async def refuses(args: EchoArgs, ctx: ToolContext) -> str:
            raise ToolFailure("the page returned 404")

        async def big(args: EchoArgs, ctx: ToolContext) -> str:
            return "x" * 5000

        def label(a: EchoArgs) -> str:
            return f"Echoing {a.text}"

        made = [
            ("echo", echo),
            ("wait_gate", wait_gate),
            ("open_gate", open_gate),
            ("slow", slow),
            ("broken", broken),
            ("refuses", refuses),
            ("big", big),
        ]
        return [
            Tool(name, f"{name} tool", EchoArgs, fn, label, timeout=0.3 if name == "slow" else None)
            for name, fn in made
        ]


@pytest.fixture
def echo() -> Echo:
    return Echo()


def engine_settings(fake: FakeDeepSeek, redis_url: str, **kw: Any) -> Settings:
    return make_settings(None, fake, redis_url=redis_url, tool_output_cap=1000, **kw)


@pytest.fixture
async def deps(
    fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str, echo: Echo
) -> AsyncIterator[Deps]:
    d = build_deps(engine_settings(fake_deepseek, redis_url), redis=redis)
    d.engine = with_tools(d, echo.tools())
    yield d
    await d.aclose()


def with_tools(d: Deps, tools: list[Tool[Any]], settings: Settings | None = None) -> Engine:
    return Engine(
        settings or d.settings,
        d.redis,
        d.client,
        tools,
        d.prices,
        d.prefs,
        d.ledger,
        d.records,
        d.http,
    )


async def run(engine: Engine, text: str, **kw: Any) -> list[EngineEvent]:
    turn = Turn(thread=kw.pop("thread", THREAD), user=kw.pop("user", "U1"), text=text, **kw)
    return [e async for e in engine.run(turn)]


def last(events: list[EngineEvent]) -> EngineEvent:
    return events[-1]


async def waiting(redis: Redis, count: int) -> None:
    """Until `count` turns are queued for THREAD's lock (polled: Redis has no signal for it)."""
    for _ in range(2000):
        if await redis.zcard(keys.thread_waiters(THREAD)) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {count} turns waiting for the lock")


async def test_history_carried_byte_exact(deps: Deps, fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("First answer.", reasoning="Let me think."))
    fake_deepseek.push(text_reply("Second answer."))
    one = await run(deps.engine, "first question", thread_note="[Started 2026-11-25 in #x]")
    two = await run(deps.engine, "second question")
    assert isinstance(last(one), TurnDone) and isinstance(last(two), TurnDone)
    r1, r2 = fake_deepseek.requests
    # Turn 2 repeats turn 1's request and its answer exactly, then appends.
    n = len(r1["messages"])
    assert json.dumps(r2["messages"][:n]) == json.dumps(r1["messages"])
    assert r2["messages"][n] == {
        "role": "assistant",
        "content": "First answer.",
        "reasoning_content": "Let me think.",
    }
    assert r2["messages"][n + 1] == {"role": "user", "content": "second question"}
    assert r1["messages"][1]["content"].startswith("[Started 2026-11-25 in #x]")
    assert r1["tools"] == r2["tools"]


async def test_reasoning_passed_back_with_tools(deps: Deps, fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(
        tool_reply([("echo", {"text": "hi"})], reasoning="I should echo."),
        text_reply("Echoed.", reasoning="Done."),
        text_reply("Again."),
    )
    events = await run(deps.engine, "echo hi")
    assert isinstance(last(events), TurnDone)
    assert [type(e) for e in events if isinstance(e, ToolStarted | ToolFinished)] == [
        ToolStarted,
        ToolFinished,
    ]
    second = fake_deepseek.requests[1]["messages"]
    assert second[-2]["reasoning_content"] == "I should echo."
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "echo",
        "arguments": '{"text": "hi"}',
    }
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0_echo", "content": "echo:hi"}
    await run(deps.engine, "and again")
    third = fake_deepseek.requests[2]["messages"]
    assert all("reasoning_content" in m for m in third if m["role"] == "assistant")
    assert third[len(second)]["reasoning_content"] == "Done."


async def test_parallel_tool_calls_run_concurrently(
    deps: Deps, fake_deepseek: FakeDeepSeek
) -> None:
    # wait_gate only returns once open_gate ran: sequential execution would time out.
    fake_deepseek.push(tool_reply([("wait_gate", {"text": "a"}), ("open_gate", {"text": "b"})]))
    events = await run(deps.engine, "go")
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert {e.name for e in finished} == {"wait_gate", "open_gate"} and all(e.ok for e in finished)
    tool_msgs = [m for m in fake_deepseek.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["gate passed", "gate opened"]  # call order


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("slow", {"text": "x"}, "Error: slow timed out after 0.3 s."),
        ("broken", {"text": "x"}, "Error: broken failed unexpectedly (RuntimeError)."),
        ("refuses", {"text": "x"}, "Error: the page returned 404"),
        ("nope", {"text": "x"}, "Error: there is no tool named 'nope'."),
        ("echo", '{"text": ', "Error: invalid arguments"),
        ("big", {"text": "x"}, "x" * 1000 + "\n[truncated: 4000 more characters]"),
    ],
)
async def test_tool_failures_become_readable_results(
    deps: Deps, fake_deepseek: FakeDeepSeek, tool: str, args: Any, expected: str
) -> None:
    fake_deepseek.push(tool_reply([(tool, args)]), text_reply("Sorry."))
    events = await run(deps.engine, "try it")
    assert isinstance(last(events), TurnDone)
    result = fake_deepseek.requests[1]["messages"][-1]["content"]
    assert result.startswith(expected)
    assert "secret internals" not in result


async def test_max_rounds_then_final_answer(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis_url: str, echo: Echo
) -> None:
    engine = with_tools(
        deps, echo.tools(), engine_settings(fake_deepseek, redis_url, max_tool_rounds=2)
    )
    fake_deepseek.push(
        tool_reply([("echo", {"text": "1"})]),
        tool_reply([("echo", {"text": "2"})]),
        text_reply("Final."),
    )
    events = await run(engine, "loop")
    assert isinstance(last(events), TurnDone) and last(events).text == "Final."  # type: ignore[union-attr]
    assert [bool(r.get("tools")) for r in fake_deepseek.requests] == [True, True, False]


async def test_trim_happens_rarely_and_keeps_prefix_stable(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis_url: str, echo: Echo
) -> None:
    engine = with_tools(
        deps, [], engine_settings(fake_deepseek, redis_url, context_token_budget=1000)
    )
    for i in range(12):
        fake_deepseek.push(text_reply(f"Answer {i}: " + "words " * 60))
        await run(engine, f"question {i} " + "about things " * 20)
    bodies = [r["messages"] for r in fake_deepseek.requests]
    stable = sum(json.dumps(b[: len(a)]) == json.dumps(a) for a, b in itertools.pairwise(bodies))
    trims = len(bodies) - 1 - stable
    assert 1 <= trims <= 3  # a few big steps, not one per turn
    assert any(prompt.TRIMMED_NOTE in m["content"] for m in bodies[-1] if m["role"] == "user")


async def test_lock_serialises_turns_across_engines(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> None:
    other = build_deps(engine_settings(fake_deepseek, redis_url), redis=redis)
    release = asyncio.Event()  # the first answer streams until the second turn waits
    fake_deepseek.push(text_reply("Slow first answer.", hold=release), text_reply("Second."))
    first = asyncio.create_task(run(deps.engine, "first", order=1.0))
    await fake_deepseek.wait_for_requests(1)  # the first turn holds the thread's lock
    second = asyncio.create_task(run(other.engine, "second", order=2.0))
    await waiting(redis, 1)
    release.set()
    e1, e2 = await asyncio.gather(first, second)
    await other.aclose()
    assert isinstance(last(e1), TurnDone) and isinstance(last(e2), TurnDone)
    later = fake_deepseek.requests[1]["messages"]
    assert [m["content"] for m in later[1:]] == ["first", "Slow first answer.", "second"]
    assert not await redis.exists(keys.thread_lock(THREAD))


async def test_waiters_take_turns_in_message_order(deps: Deps, fake_deepseek: FakeDeepSeek) -> None:
    release = asyncio.Event()  # A1 streams until both other turns wait
    fake_deepseek.push(text_reply("A1", hold=release), text_reply("A2"), text_reply("A3"))
    first = asyncio.create_task(run(deps.engine, "q1", order=1.0))
    await fake_deepseek.wait_for_requests(1)  # q1 holds the thread's lock
    # Written second and third, delivered in the opposite order.
    third = asyncio.create_task(run(deps.engine, "q3", order=3.0))
    await waiting(deps.redis, 1)
    second = asyncio.create_task(run(deps.engine, "q2", order=2.0))
    await waiting(deps.redis, 2)
    release.set()
    await asyncio.gather(first, second, third)
    final = [m["content"] for m in fake_deepseek.requests[2]["messages"][1:]]
    assert final == ["q1", "A1", "q2", "A2", "q3"]


async def test_duplicate_delivery_claimed_once(redis: Redis) -> None:
    assert await claim_once(redis, "T1", ["Ev1", "msg-1"])
    assert not await claim_once(redis, "T1", ["Ev1", "msg-1"])  # Slack retry
    assert not await claim_once(redis, "T1", ["Ev2", "msg-1"])  # same message, other event type


async def test_rebuild_from_slack_when_history_missing(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis: Redis
) -> None:
    await run(deps.engine, "remember 42")
    await redis.delete(keys.history(THREAD), keys.thread_meta(THREAD))

    async def rebuild() -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": "Alice: remember 42"},
            {"role": "assistant", "content": "Hello from fake DeepSeek."},
            {"role": "assistant", "content": "(second bot message)"},
        ]

    await run(deps.engine, "what number?", rebuild=rebuild)
    msgs = fake_deepseek.requests[-1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "Hello from fake DeepSeek.\n\n(second bot message)"
    assert msgs[2]["reasoning_content"] == ""


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error_reply(402, "Insufficient Balance"), "BalanceExhausted"),
        (error_reply(401, "bad key"), "AuthError"),
    ],
)
async def test_upstream_failure_stores_consistent_history(
    deps: Deps, fake_deepseek: FakeDeepSeek, reply: Reply, kind: str
) -> None:
    fake_deepseek.push(reply)
    events = await run(deps.engine, "hello?")
    failed = last(events)
    assert isinstance(failed, TurnFailed) and type(failed.error).__name__ == kind
    await run(deps.engine, "again")
    msgs = fake_deepseek.requests[-1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"].startswith("[This answer was interrupted:")


async def test_consumer_cancel_keeps_partial_answer(
    deps: Deps, fake_deepseek: FakeDeepSeek
) -> None:
    fake_deepseek.push(text_reply("Partial words and then more", pieces=6, chunk_delay=0.2))
    turn = Turn(thread=THREAD, user="U1", text="tell me")
    seen: list[str] = []
    first_text = asyncio.Event()

    async def consume() -> None:
        async for e in deps.engine.run(turn):
            if isinstance(e, TextDelta):
                seen.append(e.text)
                first_text.set()

    task = asyncio.create_task(consume())
    await first_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await run(deps.engine, "go on")
    msgs = fake_deepseek.requests[-1]["messages"]
    assert msgs[2]["role"] == "assistant"
    assert msgs[2]["content"].startswith("".join(seen))
    assert msgs[2]["content"].endswith("[This answer was interrupted: stopped]")


async def test_settings_and_usage_recorded(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis: Redis
) -> None:
    await deps.prefs.set("T1", "user", "U1", "model", "pro")
    await deps.prefs.set("T1", "user", "U1", "thinking", "off")
    fake_deepseek.push(tool_reply([("echo", {"text": "x"})]), text_reply("ok"))
    events = await run(deps.engine, "hi")
    done = last(events)
    assert isinstance(done, TurnDone)
    assert done.model == "deepseek-v4-pro" and done.thinking is False
    assert [r["model"] for r in fake_deepseek.requests] == ["deepseek-v4-pro"] * 2
    assert all(r["thinking"] == {"type": "disabled"} for r in fake_deepseek.requests)
    assert done.cost_micros > 0 and done.usage.prompt > 0


async def test_content_filtered_answer_is_still_billed(
    deps: Deps, fake_deepseek: FakeDeepSeek, redis: Redis
) -> None:
    fake_deepseek.push(text_reply("Some text before", finish="content_filter"))
    events = await run(deps.engine, "something filtered")
    failed = last(events)
    assert isinstance(failed, TurnFailed) and type(failed.error).__name__ == "ContentFiltered"
    assert failed.partial == "Some text before"
    assert failed.usage.prompt > 0  # the gateway billed it, so the ledger has it
    _, metrics = await deps.ledger.reports.user_usage("T1", "U1", "today")
    assert metrics.requests == 1 and metrics.out == failed.usage.completion > 0
