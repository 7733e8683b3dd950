"""The usage ledger on a real Redis: aggregates, costs on each gateway's prices, budgets,
budget alerts, retention."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest
from redis.asyncio import Redis

from bot.config import Gateway, ModelTier, Settings
from bot.contracts.stream import Usage
from bot.deepseek.pricing import PriceTable
from bot.store import keys
from bot.store.connection import open_redis
from bot.usage.budgets import BudgetAlert
from bot.usage.ledger import Ledger
from bot.usage.recorder import UsageRecord
from bot.usage.reports import Metrics
from tests.conftest import make_settings

NOW = datetime(2026, 11, 7, 15, 30, tzinfo=UTC)
TODAY = NOW.date()

# Known usage: one Pro call and one Flash call.
PRO = Usage(
    prompt=1_000_000, completion=200_000, cache_hit=800_000, cache_miss=200_000, reasoning=50_000
)
FLASH = Usage(prompt=500_000, completion=100_000, cache_hit=400_000, cache_miss=100_000)

# Hand-computed from REFERENCE.md's price table (USD per 1M tokens = micro-dollars per token):
#   deepseek pro:   200k*0.435 + 800k*0.003625 + 200k*0.87  = 87,000 + 2,900 + 174,000 = 263,900
#            flash: 100k*0.14  + 400k*0.0028   + 100k*0.28  = 14,000 + 1,120 +  28,000 =  43,120
#            saved: 800k*(0.435-0.003625) + 400k*(0.14-0.0028) = 345,100 + 54,880 = 399,980
#   ourtoken pro:   200k*0.348 + 800k*0.003    + 200k*0.696 = 69,600 + 2,400 + 139,200 = 211,200
#            flash: 100k*0.112 + 400k*0.00224  + 100k*0.224 = 11,200 +   896 +  22,400 =  34,496
#            saved: 800k*0.345 + 400k*0.10976 = 276,000 + 43,904 = 319,904
#   tokenhub (no cache-hit price: hits billed as misses)
#            pro:   1M*1.80 + 200k*3.60 = 1,800,000 + 720,000 = 2,520,000
#            flash: 500k*0.15 + 100k*0.30 = 75,000 + 30,000 = 105,000; saved: 0
EXPECTED: dict[str, tuple[int, int, int, int]] = {
    # gateway: (pro cost, flash cost, saved by cache on pro, on flash)
    "deepseek": (263_900, 43_120, 345_100, 54_880),
    "ourtoken": (211_200, 34_496, 276_000, 43_904),
    "tokenhub": (2_520_000, 105_000, 0, 0),
}


def replace_at(rec: UsageRecord, at: datetime) -> UsageRecord:
    return dataclasses.replace(rec, at=at)


class Setup(NamedTuple):
    ledger: Ledger
    settings: Settings


def ledger_for(redis: Redis, gateway: Gateway = "deepseek", **overrides: Any) -> Setup:
    settings = make_settings(None, None, deepseek_gateway=gateway, **overrides)
    return Setup(
        Ledger(redis, settings, PriceTable.from_settings(settings), now=lambda: NOW), settings
    )


def record(
    settings: Settings,
    tier: ModelTier,
    usage: Usage,
    *,
    user: str = "U1",
    channel: str = "C1",
    thread: str = "1700000000.000100",
    thinking: bool = True,
    at: datetime = NOW,
    team: str = "T1",
) -> UsageRecord:
    """A record as the engine makes it: cost priced by the gateway's table."""
    return UsageRecord(
        team=team,
        user=user,
        channel=channel,
        thread_ts=thread,
        tier=tier,
        model=settings.model_id(tier),
        thinking=thinking,
        usage=usage,
        cost_micros=PriceTable.from_settings(settings).cost_micros(tier, usage),
        at=at,
    )


@pytest.mark.parametrize("gateway", ["deepseek", "ourtoken", "tokenhub"])
async def test_report_figures_on_each_gateways_prices(redis: Redis, gateway: Gateway) -> None:
    ledger, s = ledger_for(redis, gateway)
    await ledger.recorder.record(record(s, "pro", PRO, user="U1", channel="C1"))
    await ledger.recorder.record(record(s, "flash", FLASH, user="U2", channel="C2", thinking=False))
    pro_cost, flash_cost, pro_saved, flash_saved = EXPECTED[gateway]

    report = await ledger.reports.report("T1", "7d")
    assert report.total == Metrics(
        requests=2,
        thinking=1,
        hit=1_200_000,
        miss=300_000,
        out=300_000,
        reasoning=50_000,
        cost=pro_cost + flash_cost,
        saved=pro_saved + flash_saved,
    )
    assert report.by_model["deepseek-v4-pro"].cost == pro_cost
    assert report.by_model["deepseek-v4-flash"].cost == flash_cost
    assert report.by_user["U1"].cost == pro_cost
    assert report.by_channel["C2"] == Metrics(
        1, 0, 400_000, 100_000, 100_000, 0, flash_cost, flash_saved
    )
    assert report.pricing == [PriceTable.from_settings(s).describe()]
    assert report.pricing[0].startswith(f"{gateway}: flash in $")


async def test_cost_is_stored_so_a_price_change_applies_from_then_on(redis: Redis) -> None:
    old, old_settings = ledger_for(redis, "deepseek")
    await old.recorder.record(record(old_settings, "pro", PRO))
    # Later the operator configures a new Pro price; the earlier call keeps its cost.
    new, new_settings = ledger_for(
        redis,
        "deepseek",
        deepseek_prices={"pro": {"input": "1", "cache_hit": "0.01", "output": "2"}},
    )
    await new.recorder.record(record(new_settings, "pro", PRO))
    report = await new.reports.report("T1", "today")
    # new: 200k*1 + 800k*0.01 + 200k*2 = 200,000 + 8,000 + 400,000 = 608,000
    assert report.total.cost == 263_900 + 608_000
    # The day's last table is the one shown.
    assert report.pricing == [PriceTable.from_settings(new_settings).describe()]
    assert "pro in $1 / hit $0.01 / out $2" in report.pricing[0]


async def test_days_are_kept_apart_and_periods_add_them_up(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    for days_ago in (0, 1, 6, 7, 29, 30):
        at = NOW - timedelta(days=days_ago)
        await ledger.recorder.record(record(s, "flash", FLASH, at=at))
    reports = ledger.reports
    counts = {p: (await reports.report("T1", p)).total.requests for p in ("today", "7d", "30d")}
    assert counts == {"today": 1, "7d": 3, "30d": 5}
    assert (await reports.report("T1", "month")).total.requests == 3  # Nov 7, 6 and 1
    rows = await reports.daily_rows("T1", "30d")
    assert [r.day for r in rows] == [TODAY - timedelta(days=d) for d in (29, 7, 6, 1, 0)]


async def test_days_are_utc_days(redis: Redis) -> None:
    # 01:30 on Nov 8 at UTC+3 is still Nov 7 in UTC, for records and for the clock.
    local = timezone(timedelta(hours=3))
    settings = make_settings(None, None)
    ledger = Ledger(
        redis,
        settings,
        PriceTable.from_settings(settings),
        now=lambda: datetime(2026, 11, 8, 1, 30, tzinfo=local),
    )
    await ledger.recorder.record(
        record(settings, "flash", FLASH, at=datetime(2026, 11, 8, 2, 59, tzinfo=local))
    )
    days, mine = await ledger.reports.user_usage("T1", "U1", "today")
    assert (days, mine.requests) == ([date(2026, 11, 7)], 1)


async def test_user_usage_is_only_the_callers(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.recorder.record(record(s, "pro", PRO, user="U1"))
    await ledger.recorder.record(record(s, "flash", FLASH, user="U2"))
    days, mine = await ledger.reports.user_usage("T1", "U1", "today")
    assert days == [TODAY]
    assert mine == Metrics(1, 1, 800_000, 200_000, 200_000, 50_000, 263_900, 345_100)
    assert (await ledger.reports.user_usage("T1", "U3", "30d"))[1] == Metrics()


async def test_prompt_only_usage_counts_as_misses(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.recorder.record(record(s, "flash", Usage(prompt=1000, completion=10)))
    total = (await ledger.reports.report("T1", "today")).total
    # 1000*0.14 + 10*0.28 = 142.8 -> 143 micro-dollars
    assert (total.hit, total.miss, total.cost, total.saved) == (0, 1000, 143, 0)


async def test_large_sums_stay_exact(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    big = dataclasses.replace(record(s, "pro", PRO), cost_micros=123_456_789_012_345)
    await ledger.recorder.record(big)
    await ledger.recorder.record(replace_at(big, NOW - timedelta(days=1)))
    report = await ledger.reports.report("T1", "7d")
    assert report.total.cost == 246_913_578_024_690
    assert report.by_user["U1"].cost == 246_913_578_024_690


async def test_concurrent_records_are_all_counted(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    rec = record(s, "flash", Usage(prompt=100, completion=10, cache_miss=100))
    await asyncio.gather(*(ledger.recorder.record(rec) for _ in range(50)))
    total = (await ledger.reports.report("T1", "today")).total
    assert (total.requests, total.miss, total.cost) == (50, 5000, 50 * rec.cost_micros)


async def test_aggregates_expire_after_the_retention(redis: Redis) -> None:
    ledger, s = ledger_for(redis, usage_retention_days=10)
    now = datetime.now(UTC)
    await ledger.recorder.record(record(s, "pro", PRO, at=now))
    day = now.date().isoformat()
    for dim in ("total", "model", "user", "channel", "thread"):
        ttl = await redis.ttl(keys.usage("T1", day, dim))
        assert 10 * 86_400 <= ttl <= 11 * 86_400, dim
    # The month's budget meter lives a month longer than the day's counters.
    month_ttl = await redis.ttl(keys.usage_month("T1", now.strftime("%Y-%m")))
    assert 41 * 86_400 <= month_ttl <= 42 * 86_400
    thread = await redis.hgetall(keys.usage("T1", day, "thread"))
    assert set(thread) == {"C1/1700000000.000100:requests", "C1/1700000000.000100:cost"}


async def test_a_30_day_report_is_four_merges_and_no_scan(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.recorder.record(record(s, "pro", PRO))
    await redis.config_resetstat()
    await ledger.reports.report("T1", "30d")
    stats = await redis.info("commandstats")
    called = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    called.pop("info", None)
    for admin in ("config|resetstat", "script|exists", "script|load"):
        called.pop(admin, None)
    # Four server-side merges of 30 hashes each, and each day's price-table line.
    assert called == {"evalsha": 4, "hgetall": 30 * 4, "hget": 30}


async def test_user_daily_cap(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    budgets = ledger.budgets
    await budgets.set_cap("T1", "user", 300_000, by="UADMIN")
    await ledger.recorder.record(record(s, "pro", PRO, user="U1"))  # 263,900: under the cap
    assert await budgets.verdict("T1", "U1") == "ok"
    await ledger.recorder.record(record(s, "flash", FLASH, user="U1"))  # 307,020: at/over
    assert await budgets.verdict("T1", "U1") == "refuse"
    assert await budgets.verdict("T1", "U2") == "ok"  # a cap per person
    ledger.now = lambda: NOW + timedelta(days=1)  # a new UTC day
    assert await budgets.verdict("T1", "U1") == "ok"
    ledger.now = lambda: NOW
    await budgets.set_cap("T1", "user", None, by="UADMIN")
    assert await budgets.verdict("T1", "U1") == "ok"


async def test_exactly_at_the_cap_is_over(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.budgets.set_cap("T1", "user", 263_900, by="UADMIN")
    await ledger.recorder.record(record(s, "pro", PRO))
    assert await ledger.budgets.verdict("T1", "U1") == "refuse"


async def test_over_budget_action_flash(redis: Redis) -> None:
    ledger, s = ledger_for(redis, over_budget_action="flash")
    await ledger.budgets.set_cap("T1", "workspace", 100_000, by="UADMIN")
    assert await ledger.budgets.verdict("T1", "U1") == "ok"
    await ledger.recorder.record(record(s, "pro", PRO, user="U2"))
    assert await ledger.budgets.verdict("T1", "U1") == "flash"


async def test_workspace_cap_covers_the_month(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    budgets = ledger.budgets
    await budgets.set_cap("T1", "workspace", 500_000, by="UADMIN")
    await ledger.recorder.record(record(s, "pro", PRO, user="U1", at=NOW - timedelta(days=3)))
    await ledger.recorder.record(record(s, "pro", PRO, user="U2", at=NOW - timedelta(days=7)))
    assert await budgets.verdict("T1", "U3") == "ok"  # 263,900 this month (Oct 31 is not)
    await ledger.recorder.record(record(s, "pro", PRO, user="U2"))
    assert await budgets.verdict("T1", "U3") == "refuse"  # 527,800 this month
    assert await budgets.spend("T1", "U2") == (263_900, 527_800)
    caps = await budgets.caps("T1")
    assert (caps.workspace_monthly, caps.workspace_monthly_by) == (500_000, "UADMIN")


async def test_admins_are_alerted_once_at_80_and_once_at_100_percent(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    heard: list[BudgetAlert] = []

    async def listener(alert: BudgetAlert) -> None:
        heard.append(alert)

    ledger.budgets.on_alert(listener)
    await ledger.budgets.set_cap("T1", "workspace", 1_000_000, by="UADMIN")
    small = Usage(prompt=1_000_000, completion=0, cache_miss=1_000_000)  # flash: 140,000
    results = [await ledger.recorder.record(record(s, "flash", small)) for _ in range(8)]
    assert results[:5] == [None] * 5  # 700,000: under 80%
    assert results[5] == BudgetAlert("T1", "2026-11", 80, 840_000, 1_000_000, "UADMIN")
    assert results[6:] == [None, BudgetAlert("T1", "2026-11", 100, 1_120_000, 1_000_000, "UADMIN")]
    assert await ledger.recorder.record(record(s, "flash", small)) is None  # told once
    await asyncio.gather(*ledger.budgets._tasks)  # listeners run as tasks
    assert [a.threshold for a in heard] == [80, 100]
    # A raised cap is a new cap: its 80% is announced again.
    await ledger.budgets.set_cap("T1", "workspace", 1_500_000, by="UADMIN")
    alert = await ledger.recorder.record(record(s, "flash", small))
    assert alert is not None and (alert.threshold, alert.spent_micros) == (80, 1_400_000)


async def test_one_jump_past_both_thresholds_is_one_alert(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.budgets.set_cap("T1", "workspace", 100_000, by="")
    alert = await ledger.recorder.record(record(s, "pro", PRO))
    assert alert is not None and alert.threshold == 100
    assert await ledger.recorder.record(record(s, "pro", PRO)) is None


async def test_a_failing_listener_does_not_fail_the_record(redis: Redis) -> None:
    ledger, s = ledger_for(redis)

    async def broken(alert: BudgetAlert) -> None:
        raise RuntimeError("slack is down")

    ledger.budgets.on_alert(broken)
    await ledger.budgets.set_cap("T1", "workspace", 1, by="")
    assert await ledger.recorder.record(record(s, "pro", PRO)) is not None
    await asyncio.gather(*ledger.budgets._tasks)


async def test_teams_are_separate(redis: Redis) -> None:
    ledger, s = ledger_for(redis)
    await ledger.budgets.set_cap("T1", "workspace", 1, by="")
    await ledger.recorder.record(record(s, "pro", PRO, team="T2"))
    assert (await ledger.reports.report("T1", "today")).total == Metrics()
    assert await ledger.budgets.verdict("T1", "U1") == "ok"
    assert (await ledger.reports.report("T2", "today")).total.requests == 1


async def test_the_embedded_store_runs_the_same_ledger() -> None:
    """The terminal without REDIS_URL uses fakeredis: MULTI, the merge script, budgets."""
    settings = make_settings(None, None, redis_url=None)
    redis = open_redis(settings)
    ledger = Ledger(redis, settings, PriceTable.from_settings(settings), now=lambda: NOW)
    await ledger.budgets.set_cap("T1", "workspace", 300_000, by="U1")
    await ledger.recorder.record(record(settings, "pro", PRO))
    alert = await ledger.recorder.record(record(settings, "flash", FLASH, user="U2"))
    assert alert is not None and alert.threshold == 100
    report = await ledger.reports.report("T1", "30d")
    assert (report.total.cost, report.by_user["U2"].cost) == (307_020, 43_120)
    assert await ledger.budgets.verdict("T1", "U3") == "refuse"
    await redis.aclose()
