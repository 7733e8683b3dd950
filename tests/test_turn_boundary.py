"""The turn's boundaries: a bug ends the turn with a fixed sentence and a traceback in the log,
never a silent stop; every turn ends with exactly one `turn_end` log line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bot.contracts.errors import Crashed
from bot.contracts.events import TurnDone, TurnFailed
from bot.core.engine import Turn
from bot.deps import Deps, build_deps
from bot.slack.incoming import Incoming
from tests.conftest import RunningBot
from tests.fakes.deepseek import FakeDeepSeek, text_reply, tool_reply
from tests.test_engine import THREAD, Echo, engine_settings, run, with_tools


@pytest.fixture(name="deps")
async def fixture_deps(
    fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> AsyncIterator[Deps]:
    """The engine with the engine tests' echo tools, on real Redis and the fake DeepSeek."""
    built = build_deps(engine_settings(fake_deepseek, redis_url), redis=redis)
    built.engine = with_tools(built, Echo().tools())
    yield built
    await built.aclose()


def turn_ends(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "turn_end"]


async def test_a_finished_turn_logs_one_summary_line(
    deps: Deps, fake_deepseek: FakeDeepSeek
) -> None:
    fake_deepseek.push(tool_reply([("echo", {"text": "a"}), ("echo", {"text": "b"})]))
    fake_deepseek.push(text_reply("Done.", reasoning="Think."))
    with capture_logs() as logs:
        events = await run(deps.engine, "question")
    assert isinstance(events[-1], TurnDone)
    (line,) = turn_ends(logs)
    usage = events[-1].usage
    assert line["outcome"] == "done"
    assert line["model"] == deps.settings.model_id(deps.settings.default_model)
    assert (line["tokens_hit"], line["tokens_miss"]) == (usage.cache_hit, usage.cache_miss)
    assert (line["tokens_output"], line["tokens_reasoning"]) == (usage.completion, usage.reasoning)
    assert line["cost_micros"] == events[-1].cost_micros > 0
    assert (line["tool_calls"], line["tools"]) == (2, "echo")
    assert line["duration_ms"] >= line["first_text_ms"] >= 0
    assert "question" not in str(line) and "Done." not in str(line)


async def test_a_bug_in_the_turn_becomes_a_fixed_sentence(
    deps: Deps, fake_deepseek: FakeDeepSeek
) -> None:
    async def broken_rebuild() -> list[dict[str, Any]]:
        raise RuntimeError("secret internals")

    with capture_logs() as logs:
        events = await run(deps.engine, "question", rebuild=broken_rebuild)
    end = events[-1]
    assert isinstance(end, TurnFailed) and isinstance(end.error, Crashed)
    assert "secret" not in end.error.user_message
    crashed = [e for e in logs if e["event"] == "turn_crashed"]
    assert len(crashed) == 1 and crashed[0]["exc_info"] is True
    (line,) = turn_ends(logs)
    assert line["outcome"] == "Crashed"
    # The thread still takes turns: the next one answers normally.
    fake_deepseek.push(text_reply("Fine now."))
    assert isinstance((await run(deps.engine, "again"))[-1], TurnDone)


async def test_a_consumer_that_stops_early_still_gets_one_line(
    deps: Deps, fake_deepseek: FakeDeepSeek
) -> None:
    fake_deepseek.push(text_reply("A long answer in many pieces.", pieces=8))
    with capture_logs() as logs:
        stream = deps.engine.run(Turn(thread=THREAD, user="U1", text="question"))
        async for _ in stream:
            break
        await stream.aclose()
    (line,) = turn_ends(logs)
    assert line["outcome"] == "stopped"


async def test_a_rendering_bug_leaves_a_sentence_in_the_thread(bot: RunningBot) -> None:
    """A status callback that raises stands in for any bug in rendering: the thread gets the
    fixed sentence, the log the traceback."""
    fake = bot.fake_slack
    # A tool call makes the renderer set a status; read_snippet asks only the fake Slack.
    bot.fake_deepseek.push(tool_reply([("read_snippet", {"file": "F404"})]))

    async def broken_status(text: str, loading: list[str] | None = None) -> None:
        raise RuntimeError("secret internals")

    top = fake.add_message("C1", "hello")
    msg = Incoming("T1", "C1", "U1", "read the file", top.ts, top.ts, "channel", ("Ev1",), "T1")
    turns = bot.app.services.turns
    with capture_logs() as logs:
        rendered = await turns.answer(msg, bot_user_id="UBOT", status=broken_status)
    assert rendered is not None and isinstance(rendered.end, TurnFailed)
    assert isinstance(rendered.end.error, Crashed)
    texts = [m.text for m in fake.bot_replies("C1", top.ts)]
    assert Crashed.user_message in texts
    assert not any("secret" in t for t in texts)
    assert [e["event"] for e in logs].count("answer_crashed") == 1
