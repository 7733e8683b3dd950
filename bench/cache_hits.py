"""Prompt-cache hit share and cost over 10-turn threads.

Runs the real engine (`bot.core.engine`, embedded store) against the fake DeepSeek server
with simulated prefix caching (hit = longest common prefix with any request sent before it,
in 64-token units), and a baseline that rebuilds the prompt every turn the way naive bots do:
the current time in the system prompt and a sliding window of the last 6 messages.

    .venv/bin/python -m bench.cache_hits [--threads 5] [--turns 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import Settings
from bot.contracts.events import TurnDone
from bot.contracts.stream import Finish, TextDelta, Usage
from bot.contracts.thread import ThreadRef
from bot.core.engine import Turn
from bot.core.prompt import assistant_message, system_message, user_message
from bot.deps import build_deps
from tests.fakes.deepseek import FakeDeepSeek, text_reply

QUESTION = "Turn {i}: how should we shard the {topic} service's Redis keys, and why? " * 3
ANSWER = ("Use hash tags so one thread's keys share a slot; keep values small. " * 12).strip()
WINDOW = 6


def settings_for(fake: FakeDeepSeek) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        deepseek_api_key="sk-bench",
        deepseek_base_url=fake.url,
        deepseek_gateway="deepseek",
        searxng_url="http://127.0.0.1:9",  # offer web_search: realistic tool schemas
        log_level="ERROR",
    )


def answer(i: int) -> Any:
    return text_reply(f"{ANSWER} ({i})", pieces=8)


async def engine_thread(fake: FakeDeepSeek, settings: Settings, n: int, turns: int) -> list[Usage]:
    deps = build_deps(settings)
    thread = ThreadRef("T1", "C1", f"17000000{n:02d}.000001")
    usages: list[Usage] = []
    for i in range(turns):
        fake.push(answer(i))
        note = "[Conversation started 2026-11-25 in #eng]" if i == 0 else ""
        turn = Turn(thread, "U1", QUESTION.format(i=i, topic=n), thread_note=note, speaker="Ann")
        async for event in deps.engine.run(turn):
            if isinstance(event, TurnDone):
                usages.append(event.usage)
    await deps.aclose()
    return usages


async def baseline_thread(
    fake: FakeDeepSeek, settings: Settings, n: int, turns: int
) -> list[Usage]:
    deps = build_deps(settings)
    history: list[dict[str, Any]] = []
    usages: list[Usage] = []
    tools = [t.schema() for t in deps.tools]  # the same tools, so only the strategy differs
    start = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    for i in range(turns):
        fake.push(answer(i))
        now = (start + timedelta(minutes=3 * i)).isoformat()
        system = system_message(f"Current time: {now}. Channel #eng.")
        question = user_message(QUESTION.format(i=i, topic=n), speaker="Ann")
        messages = [system, *history[-WINDOW:], question]
        text = ""
        async for ev in deps.client.stream(
            model="deepseek-v4-flash", messages=messages, tools=tools, thinking=True, effort="high"
        ):
            if isinstance(ev, Finish) and ev.usage:
                usages.append(ev.usage)
            if isinstance(ev, TextDelta):
                text += ev.text
        history += [question, assistant_message(text, "")]
    await deps.aclose()
    return usages


def summarise(name: str, runs: list[list[Usage]], settings: Settings) -> dict[str, float]:
    from bot.deepseek.pricing import PriceTable, format_usd

    prices = PriceTable.from_settings(settings)
    shares, costs = [], []
    for usages in runs:
        later = usages[1:]
        hit = sum(u.cache_hit for u in later)
        prompt = sum(u.prompt for u in later)
        shares.append(hit / prompt if prompt else 0.0)
        costs.append(sum(prices.cost_micros("flash", u) for u in usages))
    share = statistics.median(shares)
    cost = statistics.median(costs)
    print(
        f"{name:>9}: cache-hit share turns 2+ = {share:.1%}   cost/thread (flash) = "
        f"{format_usd(int(cost))}  ({int(cost)} µ$)"
    )
    return {"share": share, "cost": cost}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=5)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    ours: list[list[Usage]] = []
    base: list[list[Usage]] = []
    ceilings: list[float] = []
    for n in range(args.threads):
        # A fresh cache per thread and per strategy: nothing shared between runs.
        for runs, fn in ((ours, engine_thread), (base, baseline_thread)):
            fake = FakeDeepSeek(cache_sim=True)
            await fake.start()
            runs.append(await fn(fake, settings_for(fake), n, args.turns))
            shared = fake.prefix_chars[1:]
            ceilings.append(sum(a for a, _ in shared) / sum(b for _, b in shared))
            await fake.stop()
    settings = Settings(_env_file=None, deepseek_gateway="deepseek")  # type: ignore[call-arg]
    print(f"{args.threads} threads x {args.turns} turns, medians:")
    a = summarise("engine", ours, settings)
    b = summarise("baseline", base, settings)
    print(f"cost ratio baseline/engine = {b['cost'] / a['cost']:.2f}x")
    # What any strategy could hit: the part of each request already sent before (the last
    # answer and the new question never are). Median over the engine's threads.
    print(f"ceiling (engine threads, unrounded prefix) = {statistics.median(ceilings[::2]):.1%}")


if __name__ == "__main__":
    asyncio.run(main())
