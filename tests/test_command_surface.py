"""`/deepseek` and the App Home tab end to end: signed requests to the running bot, real
Redis, the fake Slack recording what the bot sends (and the real engine for "next turn")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.config import Gateway, ModelTier
from bot.contracts.errors import OverBudget
from bot.contracts.events import TurnDone, TurnFailed
from bot.contracts.stream import Usage
from bot.contracts.thread import ThreadRef
from bot.core.engine import Turn
from bot.deepseek.pricing import PriceTable
from bot.usage.recorder import UsageRecord
from tests.conftest import RunningBot, make_settings, settle, start_bot, stop_bot
from tests.fakes.deepseek import FakeDeepSeek, text_reply
from tests.fakes.slack import Call, FakeSlack

NOW = datetime(2026, 11, 7, 15, 30, tzinfo=UTC)
PRO = Usage(
    prompt=1_000_000, completion=200_000, cache_hit=800_000, cache_miss=200_000, reasoning=50_000
)
FLASH = Usage(prompt=500_000, completion=100_000, cache_hit=400_000, cache_miss=100_000)


@pytest.fixture
async def pinned(bot: RunningBot) -> RunningBot:
    """The bot with its ledger's clock pinned to NOW (days and months are deterministic)."""
    bot.app.deps.ledger.now = lambda: NOW
    return bot


async def slash(bot: RunningBot, text: str, *, user: str = "U1", channel: str = "C1") -> Call:
    """Run `/deepseek text` and return the ephemeral reply the caller got."""
    fake = bot.fake_slack
    before = len(fake.calls_of("chat.postEphemeral"))
    resp = await bot.slack.command(text, user=user, channel=channel)
    assert resp.status_code == 200
    assert resp.text == ""  # acked at once, the reply comes separately
    await fake.wait_for(lambda: len(fake.calls_of("chat.postEphemeral")) > before)
    call = fake.calls_of("chat.postEphemeral")[before]
    assert (call.args["user"], call.args["channel"]) == (user, channel)
    return call


def shown(call: Call) -> str:
    """Everything the caller sees: the text and every block."""
    return str(call.args.get("text", "")) + json.dumps(call.args.get("blocks") or [])


async def record(
    bot: RunningBot, tier: ModelTier, usage: Usage, *, user: str = "U1", channel: str = "C1"
) -> int:
    """Record one upstream call the way the engine does; returns its cost."""
    deps = bot.app.deps
    cost = deps.prices.cost_micros(tier, usage)
    await deps.ledger.recorder.record(
        UsageRecord(
            team="T1",
            user=user,
            channel=channel,
            thread_ts="1700000000.000100",
            tier=tier,
            model=deps.settings.model_id(tier),
            thinking=True,
            usage=usage,
            cost_micros=cost,
            at=NOW,
        )
    )
    return cost


async def run_turn(bot: RunningBot, user: str = "U1", channel: str = "C1") -> list[Any]:
    turn = Turn(thread=ThreadRef("T1", channel, "1700000000.000200"), user=user, text="hi")
    return [event async for event in bot.app.deps.engine.run(turn)]


# --- personal settings ----------------------------------------------------------------------


async def test_model_pro_applies_to_the_next_turn(bot: RunningBot) -> None:
    reply = await slash(bot, "model pro")
    assert reply.args["text"] == (
        "Model: pro (`deepseek-v4-pro`), your choice. This applies from your next question."
    )
    events = await run_turn(bot)
    assert isinstance(events[-1], TurnDone)
    assert bot.fake_deepseek.requests[-1]["model"] == "deepseek-v4-pro"


async def test_thinking_and_effort_apply_to_the_next_turn(bot: RunningBot) -> None:
    await slash(bot, "thinking off")
    await run_turn(bot)
    assert bot.fake_deepseek.requests[-1]["thinking"] == {"type": "disabled"}
    await slash(bot, "thinking on")
    reply = await slash(bot, "effort max")
    assert reply.args["text"].startswith("Effort: max, your choice.")
    await run_turn(bot)
    body = bot.fake_deepseek.requests[-1]
    assert (body["thinking"], body.get("reasoning_effort")) == ({"type": "enabled"}, "max")


async def test_settings_show_each_value_and_its_source(bot: RunningBot) -> None:
    await slash(bot, "channel model pro", user="UADMIN")
    await slash(bot, "effort low")
    reply = await slash(bot, "settings")
    assert reply.args["text"].splitlines()[:4] == [
        "Your settings here:",
        "- Model: pro (`deepseek-v4-pro`), this channel's default",
        "- Thinking: on, the default",
        "- Effort: low, your choice",
    ]
    elsewhere = await slash(bot, "settings", channel="C2")
    assert "- Model: flash (`deepseek-v4-flash`), the default" in elsewhere.args["text"]


async def test_reset_and_default_go_back_to_the_next_layer(bot: RunningBot) -> None:
    await slash(bot, "channel effort max", user="UADMIN")
    await slash(bot, "effort low")
    reply = await slash(bot, "effort default")
    assert (
        reply.args["text"]
        == "Your effort choice is cleared. You now get: max, this channel's default."
    )
    await slash(bot, "model pro")
    reply = await slash(bot, "reset")
    assert "- Model: flash (`deepseek-v4-flash`), the default" in reply.args["text"]


async def test_channel_defaults_are_for_admins(bot: RunningBot) -> None:
    reply = await slash(bot, "channel model pro", user="U1")
    assert reply.args["text"] == "`channel` is for workspace admins."
    eff = await bot.app.deps.prefs.effective("T1", "C1", "U2")
    assert eff.sources["model"] == "default"
    reply = await slash(bot, "channel model pro", user="UADMIN")
    assert reply.args["text"].startswith("This channel's default model is now `pro`.")
    eff = await bot.app.deps.prefs.effective("T1", "C1", "U2")
    assert (eff.model, eff.sources["model"]) == ("pro", "channel")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model gpt5",
            "`gpt5` is not a choice here. Model is `pro` or `flash` (or `default`), "
            "like `model pro`.",
        ),
        (
            "effort 11",
            "`11` is not a choice here. Effort is `low`, `high` or `max` (or `default`), "
            "like `effort high`.",
        ),
        ("thinking maybe", None),
        ("usage 90d", "Usage covers `today`, `7d` or `30d`."),
    ],
)
async def test_bad_arguments_get_one_line(bot: RunningBot, text: str, expected: str | None) -> None:
    reply = await slash(bot, text)
    assert "\n" not in reply.args["text"]
    assert not reply.args.get("blocks")
    if expected is not None:
        assert reply.args["text"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "budget user -5",
            "A budget is a positive amount of US dollars, like `budget user 5/day` (or `off`).",
        ),
        (
            "budget workspace 5/day",
            "A workspace budget is per month, like `budget workspace 200/month`.",
        ),
        ("cost yesterday", "A cost report covers `today`, `7d`, `30d` or `month`."),
        ("cost export today", "An export covers `7d`, `30d` or `month`."),
        ("channel effort 11", None),
    ],
)
async def test_admins_bad_arguments_get_one_line(
    bot: RunningBot, text: str, expected: str | None
) -> None:
    reply = await slash(bot, text, user="UADMIN")
    assert "\n" not in reply.args["text"]
    if expected is not None:
        assert reply.args["text"] == expected


@pytest.mark.parametrize(
    ("text", "unknown"), [("", ""), ("help", ""), ("frobnicate 3", "frobnicate")]
)
async def test_help_and_unknown_get_usage_text(bot: RunningBot, text: str, unknown: str) -> None:
    reply = await slash(bot, text)
    body = reply.args["text"]
    assert "`/deepseek model pro|flash`" in body
    assert "`/deepseek cost [today" not in body  # admin commands are only named
    assert ("I don't know `frobnicate`" in body) == bool(unknown)
    admin = await slash(bot, text, user="UADMIN")
    assert "`/deepseek cost [today|7d|30d|month]`" in admin.args["text"]


# --- usage and cost ---------------------------------------------------------------------------


async def test_usage_shows_only_the_callers_figures(pinned: RunningBot) -> None:
    await record(pinned, "pro", PRO, user="U1")
    await record(pinned, "flash", FLASH, user="U2")
    reply = await slash(pinned, "usage")
    assert reply.args["text"] == "Your usage, today: $0.2639"
    fields = [f["text"] for b in reply.args["blocks"] for f in b.get("fields", [])]
    assert fields == [
        "*Spend*\n$0.2639",
        "*Requests*\n1 (1 with thinking)",
        "*Input tokens*\n1,000,000 (cache hit 800,000 / miss 200,000)",
        "*Output tokens*\n200,000 (of which reasoning 50,000)",
        "*Cache hit ratio*\n80.0%",
    ]
    empty = await slash(pinned, "usage 30d", user="U3")
    assert "No requests in this period." in shown(empty)


# Hand-computed (see tests/test_ledger.py for the arithmetic): spend, saved by cache.
GATEWAY_FIGURES: dict[str, tuple[str, str, str, str]] = {
    # gateway: (total, pro, flash, saved)
    "deepseek": ("$0.3070", "$0.2639", "$0.0431", "$0.4000"),
    "ourtoken": ("$0.2457", "$0.2112", "$0.0345", "$0.3199"),
    "tokenhub": ("$2.6250", "$2.5200", "$0.1050", "$0.0000"),
}


@pytest.fixture
async def gateway_bot(
    request: pytest.FixtureRequest,
    redis: Redis,
    redis_url: str,
    fake_slack: FakeSlack,
    fake_deepseek: FakeDeepSeek,
) -> AsyncIterator[RunningBot]:
    settings = make_settings(
        fake_slack, fake_deepseek, redis_url=redis_url, deepseek_gateway=request.param
    )
    running, runner = await start_bot(settings, redis, fake_slack, fake_deepseek)
    running.app.deps.ledger.now = lambda: NOW
    yield running
    await stop_bot(running, runner)


@pytest.mark.parametrize("gateway_bot", ["deepseek", "ourtoken", "tokenhub"], indirect=True)
async def test_cost_report_on_each_gateways_prices(gateway_bot: RunningBot) -> None:
    bot = gateway_bot
    gateway: Gateway = bot.app.deps.settings.gateway
    total, pro, flash, saved = GATEWAY_FIGURES[gateway]
    await record(bot, "pro", PRO, user="U1", channel="C1")
    await record(bot, "flash", FLASH, user="U2", channel="C2")
    reply = await slash(bot, "cost 7d", user="UADMIN")
    assert reply.args["text"] == f"Cost, last 7 days: {total}"
    blocks = reply.args["blocks"]
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert fields[:6] == [
        f"*Spend*\n{total}",
        "*Requests*\n2 (2 with thinking)",
        "*Input tokens*\n1,500,000 (cache hit 1,200,000 / miss 300,000)",
        "*Output tokens*\n300,000 (of which reasoning 50,000)",
        "*Cache hit ratio*\n80.0%",
        f"*Saved by cache*\n{saved}",
    ]
    # By model, then top users and top channels (name left, figures right), highest first.
    assert fields[6:] == [
        "`deepseek-v4-pro`",
        f"{pro} · 1 req · in 1,000,000 / out 200,000",
        "`deepseek-v4-flash`",
        f"{flash} · 1 req · in 500,000 / out 100,000",
        "<@U1>",
        f"{pro} · 1 request",
        "<@U2>",
        f"{flash} · 1 request",
        "<#C1>",
        f"{pro} · 1 request",
        "<#C2>",
        f"{flash} · 1 request",
    ]
    prices = blocks[-1]["elements"][0]["text"]
    assert prices.startswith(f"Prices: {gateway}: flash in $")
    if gateway == "tokenhub":
        assert "hit none listed" in prices


async def test_cost_periods(pinned: RunningBot) -> None:
    await record(pinned, "pro", PRO)
    for period, title in [("", "today"), ("30d", "last 30 days"), ("month", "this month")]:
        reply = await slash(pinned, f"cost {period}".strip(), user="UADMIN")
        assert reply.args["text"] == f"Cost, {title}: $0.2639"


async def test_non_admins_see_no_figures(pinned: RunningBot) -> None:
    await record(pinned, "pro", PRO)
    for text, name in [
        ("cost", "cost"),
        ("cost 30d", "cost"),
        ("cost export", "cost export"),
        ("budget", "budget"),
        ("budget user 1/day", "budget"),
    ]:
        reply = await slash(pinned, text, user="U2")
        assert reply.args["text"] == f"`{name}` is for workspace admins."
        assert "$" not in shown(reply)
    assert not pinned.fake_slack.uploads
    assert (await pinned.app.deps.ledger.budgets.caps("T1")).user_daily is None


async def test_workspace_admins_per_users_info_are_cached(pinned: RunningBot) -> None:
    fake = pinned.fake_slack
    fake.add_user("UOWN", "Olive", is_admin=True)
    for _ in range(2):
        reply = await slash(pinned, "cost", user="UOWN")
        assert reply.args["text"].startswith("Cost, today")
    assert len([c for c in fake.calls_of("users.info") if c.args["user"] == "UOWN"]) == 1
    # ADMIN_USER_IDS never need Slack; plain members are asked once too.
    await slash(pinned, "cost", user="UADMIN")
    await slash(pinned, "cost", user="U2")
    await slash(pinned, "cost", user="U2")
    asked = [c.args["user"] for c in fake.calls_of("users.info")]
    assert asked.count("UADMIN") == 0 and asked.count("U2") == 1


async def test_cost_export_uploads_a_csv_to_the_admins_dm(pinned: RunningBot) -> None:
    await record(pinned, "pro", PRO, user="U1")
    await record(pinned, "flash", FLASH, user="U2")
    await record(pinned, "flash", FLASH, user="U1")
    reply = await slash(pinned, "cost export 7d", user="UADMIN")
    filename = "deepseek-cost-T1-2026-11-07-to-2026-11-07.csv"
    assert reply.args["text"] == (
        "Cost export, last 7 days: 2 rows, one per day and model. "
        f"I sent it to you in a DM as `{filename}`."
    )
    (upload,) = pinned.fake_slack.uploads.values()
    assert upload["filename"] == filename
    assert upload["channel"] == "DUADMIN"  # the DM the bot opened with the admin
    rows = list(csv.DictReader(io.StringIO(upload["content"].decode())))
    assert [(r["date"], r["model"], r["requests"], r["cost_usd"]) for r in rows] == [
        ("2026-11-07", "deepseek-v4-flash", "2", "0.086240"),
        ("2026-11-07", "deepseek-v4-pro", "1", "0.263900"),
    ]
    assert rows[0]["input_cache_hit_tokens"] == "800000"
    assert rows[1]["reasoning_tokens"] == "50000"


async def test_cost_export_with_nothing_to_export(pinned: RunningBot) -> None:
    reply = await slash(pinned, "cost export", user="UADMIN")
    assert reply.args["text"] == "No usage last 30 days: there is nothing to export."
    assert not pinned.fake_slack.uploads


# --- budgets ----------------------------------------------------------------------------------


async def test_user_budget_refuses_turns_at_the_cap(pinned: RunningBot) -> None:
    reply = await slash(pinned, "budget user 0.30/day", user="UADMIN")
    assert reply.args["text"] == (
        "Daily cap per person set to $0.30. At the cap, new questions are politely refused."
    )
    await record(pinned, "pro", PRO, user="U1")  # $0.2639
    assert await pinned.app.deps.ledger.budgets.verdict("T1", "U1") == "ok"
    await record(pinned, "flash", FLASH, user="U1")  # $0.3070 in all
    events = await run_turn(pinned, user="U1")
    assert len(events) == 1 and isinstance(events[0], TurnFailed)
    assert isinstance(events[0].error, OverBudget)
    assert not pinned.fake_deepseek.requests  # nothing was sent upstream
    # Someone else still gets answers; U1 sees where they stand.
    assert isinstance((await run_turn(pinned, user="U2"))[-1], TurnDone)
    settings = await slash(pinned, "settings")
    assert "Daily cap per person $0.30: you spent $0.3070 today (102%)." in settings.args["text"]
    listing = await slash(pinned, "budget", user="UADMIN")
    assert "- Daily cap per person: $0.30 (set by <@UADMIN>)" in listing.args["text"]
    removed = await slash(pinned, "budget user off", user="UADMIN")
    assert removed.args["text"] == "Daily cap per person removed."
    assert await pinned.app.deps.ledger.budgets.verdict("T1", "U1") == "ok"


async def test_workspace_budget_alerts_admins_once_at_80_percent(
    pinned: RunningBot, fake_slack: FakeSlack
) -> None:
    fake_slack.add_user("UOWN", "Olive", is_admin=True)
    reply = await slash(pinned, "budget workspace 0.50/month", user="UOWN")
    assert reply.args["text"].startswith("Workspace monthly cap set to $0.50.")
    await record(pinned, "pro", PRO, user="U1")  # $0.2639: 52%
    await record(pinned, "flash", FLASH, user="U2")  # $0.3070: 61%
    await settle()
    assert not fake_slack.calls_of("chat.postMessage")
    await record(pinned, "flash", FLASH, user="U2")  # $0.3502: 70%
    await record(pinned, "flash", FLASH, user="U2")  # $0.3933: 78%
    await record(pinned, "flash", FLASH, user="U2")  # $0.4364: 87% -> tell admins
    await fake_slack.wait_for(lambda: len(fake_slack.calls_of("chat.postMessage")) == 2)
    notes = fake_slack.calls_of("chat.postMessage")
    # ADMIN_USER_IDS and the admin who set the cap, each in their DM with the bot.
    assert sorted(c.args["channel"] for c in notes) == ["DUADMIN", "DUOWN"]
    assert notes[0].args["text"] == (
        "The workspace has used 80% of its monthly DeepSeek cap: $0.4364 of $0.50 in 2026-11. "
        "See `/deepseek cost month`."
    )
    await record(pinned, "flash", FLASH, user="U2")  # 95%: already told
    assert len(fake_slack.calls_of("chat.postMessage")) == 2
    assert await pinned.app.deps.ledger.budgets.verdict("T1", "U1") == "ok"
    assert "Workspace" not in shown(await slash(pinned, "usage", user="U1"))
    await record(pinned, "flash", FLASH, user="U2")  # $0.5226: at the cap
    assert await pinned.app.deps.ledger.budgets.verdict("T1", "U1") == "refuse"
    member = await slash(pinned, "settings", user="U1")
    assert member.args["text"].endswith(
        "The workspace reached its monthly cap; an admin can raise it."
    )
    admin = await slash(pinned, "settings", user="UADMIN")
    assert admin.args["text"].endswith("Workspace monthly cap $0.50: $0.5226 spent (104%).")
    await fake_slack.wait_for(lambda: len(fake_slack.calls_of("chat.postMessage")) == 4)
    assert (
        "reached its monthly DeepSeek cap of $0.50"
        in fake_slack.calls_of("chat.postMessage")[-1].args["text"]
    )


# --- delivery -----------------------------------------------------------------------------------


async def test_reply_falls_back_to_the_response_url(bot: RunningBot, fake_slack: FakeSlack) -> None:
    fake_slack.fail("chat.postEphemeral", "channel_not_found")
    resp = await bot.slack.command("settings", response_url=fake_slack.response_url)
    assert resp.status_code == 200
    await fake_slack.wait_for(lambda: fake_slack.responses)
    (body,) = fake_slack.responses
    assert body["response_type"] == "ephemeral"
    assert body["text"].startswith("Your settings here:")


# --- App Home ---------------------------------------------------------------------------------


async def home_of(bot: RunningBot, user: str) -> dict[str, Any]:
    fake = bot.fake_slack
    before = len(fake.calls_of("views.publish"))
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"}
    assert (await bot.slack.event(event)).status_code == 200
    await fake.wait_for(lambda: len(fake.calls_of("views.publish")) > before)
    call = fake.calls_of("views.publish")[before]
    assert call.args["user_id"] == user
    view: dict[str, Any] = call.args["view"]
    assert view["type"] == "home"
    return view


async def test_home_shows_settings_and_own_usage(pinned: RunningBot) -> None:
    await slash(pinned, "model pro")
    await record(pinned, "pro", PRO, user="U1")
    await record(pinned, "flash", FLASH, user="U2")
    text = json.dumps(await home_of(pinned, "U1"))
    assert "pro (`deepseek-v4-pro`), your choice" in text
    assert "*Spend*\\n$0.2639" in text
    assert "Workspace" not in text and "$0.3070" not in text


async def test_home_shows_admins_the_workspace(pinned: RunningBot) -> None:
    await record(pinned, "pro", PRO, user="U1")
    await record(pinned, "flash", FLASH, user="U2")
    text = json.dumps(await home_of(pinned, "UADMIN"))
    assert "Workspace, last 7 days (admins)" in text
    assert "*Spend*\\n$0.3070" in text
    assert "<@U1>" in text and "<@U2>" in text
    assert "No requests yet" in text  # the admin's own usage


async def test_home_ignores_the_messages_tab(bot: RunningBot) -> None:
    event = {"type": "app_home_opened", "user": "U1", "channel": "DU1", "tab": "messages"}
    assert (await bot.slack.event(event)).status_code == 200
    await home_of(bot, "U2")  # a later Home event is published; the Messages one never was
    assert [c.args["user_id"] for c in bot.fake_slack.calls_of("views.publish")] == ["U2"]


def test_price_table_matches_the_gateways() -> None:
    """The figures above assume REFERENCE.md's tables."""
    for gateway, (total, *_rest) in GATEWAY_FIGURES.items():
        table = PriceTable.from_settings(make_settings(None, None, deepseek_gateway=gateway))
        cost = table.cost_micros("pro", PRO) + table.cost_micros("flash", FLASH)
        assert f"${cost / 1e6:.4f}" == total


async def test_a_real_turn_is_recorded_and_priced(bot: RunningBot) -> None:
    """Engine -> ledger -> `/deepseek usage` and `cost`: the gateway's reported usage, priced
    on DeepSeek's table (hits as hits)."""
    usage = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 200_000,
        "prompt_cache_hit_tokens": 800_000,
        "prompt_cache_miss_tokens": 200_000,
        "completion_tokens_details": {"reasoning_tokens": 50_000},
    }
    bot.fake_deepseek.push(text_reply("Hello.", usage=usage))
    await slash(bot, "model pro")
    events = await run_turn(bot)
    done = events[-1]
    assert isinstance(done, TurnDone) and done.cost_micros == 263_900
    mine = await slash(bot, "usage")
    assert mine.args["text"] == "Your usage, today: $0.2639"
    cost = await slash(bot, "cost", user="UADMIN")
    assert cost.args["text"] == "Cost, today: $0.2639"
    assert "*Saved by cache*\\n$0.3451" in json.dumps(cost.args["blocks"])
