"""bot/usage/reports.py (pure) and the report Block Kit: table tests of the arithmetic and forms."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bot.config import Gateway, ModelTier, Price
from bot.contracts.stream import Usage
from bot.deepseek.pricing import DEFAULT_PRICES, PriceTable, dollars_to_micros
from bot.usage.aggregates import parse_members, parse_total
from bot.usage.budgets import Caps
from bot.usage.report_blocks import budget_line
from bot.usage.reports import (
    DailyRow,
    Metrics,
    Period,
    Report,
    cost_markdown,
    daily_csv,
    format_money,
    format_ratio,
    percent_of,
    period_days,
    top,
    usage_markdown,
    utc_day,
)

D = Decimal


@pytest.mark.parametrize(
    ("period", "today", "first", "count"),
    [
        ("today", date(2026, 11, 7), date(2026, 11, 7), 1),
        ("7d", date(2026, 11, 7), date(2026, 11, 1), 7),
        ("7d", date(2026, 3, 2), date(2026, 2, 24), 7),
        ("30d", date(2026, 11, 7), date(2026, 10, 9), 30),
        ("month", date(2026, 11, 7), date(2026, 11, 1), 7),
        ("month", date(2026, 11, 1), date(2026, 11, 1), 1),
        ("month", date(2028, 2, 29), date(2028, 2, 1), 29),
    ],
)
def test_period_days(period: Period, today: date, first: date, count: int) -> None:
    days = period_days(period, today)
    assert (days[0], days[-1], len(days)) == (first, today, count)
    assert days == sorted(days)


def test_parse_members_splits_on_the_last_colon() -> None:
    raw = {
        "deepseek-v4-pro:requests": "2",
        "deepseek-v4-pro:cost": "300",
        "gw:model:x:hit": "5",
        "U1:bogus": "1",
        "prices": "deepseek: ...",
        "U2:out": "not-a-number",
    }
    assert parse_members(raw) == {
        "deepseek-v4-pro": Metrics(requests=2, cost=300),
        "gw:model:x": Metrics(hit=5),
        "U2": Metrics(out=0),
    }


def test_parse_total_ignores_unknown_fields() -> None:
    raw = {"requests": "3", "hit": "10", "miss": "5", "prices": "deepseek: x", "cost": "7"}
    assert parse_total(raw) == Metrics(requests=3, hit=10, miss=5, cost=7)


MEMBERS = {
    "U1": Metrics(requests=2, cost=15),
    "U2": Metrics(requests=5, cost=10),
    "U4": Metrics(requests=1, cost=10),
    "U3": Metrics(requests=1, cost=10),
}


@pytest.mark.parametrize(
    ("n", "ranked"),
    [
        # Highest cost first; equal cost: more requests first, then by name.
        (4, ["U1", "U2", "U3", "U4"]),
        (1, ["U1"]),
        (0, []),
    ],
)
def test_top(n: int, ranked: list[str]) -> None:
    assert [k for k, _ in top(MEMBERS, n)] == ranked


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (datetime(2026, 11, 7, 23, 59, tzinfo=UTC), date(2026, 11, 7)),
        (datetime(2026, 11, 8, 1, 30, tzinfo=timezone(timedelta(hours=3))), date(2026, 11, 7)),
        (datetime(2026, 11, 7, 22, 0, tzinfo=timezone(timedelta(hours=-3))), date(2026, 11, 8)),
        (datetime(2026, 11, 7, 23, 59), date(2026, 11, 7)),  # naive: already UTC
    ],
)
def test_utc_day(at: datetime, day: date) -> None:
    assert utc_day(at) == day


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (5_000_000, "$5.00"),
        (2_500_000, "$2.50"),
        (1_230_000, "$1.23"),
        (1_234_567, "$1.2346"),
        (194, "$0.0002"),
        (0, "$0.00"),
    ],
)
def test_format_money(micros: int, text: str) -> None:
    assert format_money(micros) == text


@pytest.mark.parametrize(
    ("ratio", "text"), [(None, "n/a"), (0.8, "80.0%"), (1 / 3, "33.3%"), (0.0, "0.0%")]
)
def test_format_ratio(ratio: float | None, text: str) -> None:
    assert format_ratio(ratio) == text


@pytest.mark.parametrize(
    ("part", "whole", "pct"), [(80, 100, 80), (799, 1000, 79), (5, 0, 0), (300, 200, 150)]
)
def test_percent_of(part: int, whole: int, pct: int) -> None:
    assert percent_of(part, whole) == pct


def test_metrics_ratio_and_counters() -> None:
    m = Metrics(requests=1, thinking=1, hit=800, miss=200, out=50, cost=9)
    assert m.input == 1000
    assert m.hit_ratio == 0.8
    assert Metrics().hit_ratio is None
    assert m.as_counters() == {
        "requests": 1,
        "thinking": 1,
        "hit": 800,
        "miss": 200,
        "out": 50,
        "cost": 9,
    }


PRO = Usage(
    prompt=1_000_000, completion=200_000, cache_hit=800_000, cache_miss=200_000, reasoning=50_000
)
FLASH = Usage(prompt=500_000, completion=100_000, cache_hit=400_000, cache_miss=100_000)
PROMPT_ONLY = Usage(prompt=1000, completion=10)  # a gateway that gives no hit/miss split


@pytest.mark.parametrize(
    ("gateway", "tier", "usage", "cost", "saved"),
    [
        # Hand-computed in tests/test_ledger.py from the default price tables.
        ("deepseek", "pro", PRO, 263_900, 345_100),
        ("deepseek", "flash", FLASH, 43_120, 54_880),
        ("ourtoken", "pro", PRO, 211_200, 276_000),
        ("ourtoken", "flash", FLASH, 34_496, 43_904),
        # No cache-hit price: hits are billed as misses, so the cache saves nothing.
        ("tokenhub", "pro", PRO, 2_520_000, 0),
        ("tokenhub", "flash", FLASH, 105_000, 0),
        # All prompt tokens are misses: 1000*0.14 + 10*0.28 = 142.8.
        ("deepseek", "flash", PROMPT_ONLY, 143, 0),
        # 150*0.87 = 130.5: rounded half-up, once per call.
        ("deepseek", "pro", Usage(prompt=0, completion=150), 131, 0),
    ],
)
def test_price_table(
    gateway: Gateway, tier: ModelTier, usage: Usage, cost: int, saved: int
) -> None:
    table = PriceTable(gateway, DEFAULT_PRICES[gateway])
    assert (table.cost_micros(tier, usage), table.saved_by_cache_micros(tier, usage)) == (
        cost,
        saved,
    )


@pytest.mark.parametrize(
    ("dollars", "micros"),
    [("5", 5_000_000), ("0.0123", 12_300), ("1.2345674", 1_234_567), ("0.0000005", 1)],
)
def test_dollars_to_micros(dollars: str, micros: int) -> None:
    assert dollars_to_micros(Decimal(dollars)) == micros


@pytest.mark.parametrize(
    ("gateway", "prices", "expected"),
    [
        (
            "deepseek",
            {"flash": Price(input=D("0.14"), cache_hit=D("0.0028"), output=D("0.28"))},
            "deepseek: flash in $0.14 / hit $0.0028 / out $0.28 (USD per 1M tokens)",
        ),
        (
            "tokenhub",
            {
                "pro": Price(input=D("1.80"), cache_hit=None, output=D("3.60")),
                "flash": Price(input=D("0.15"), output=D("0.30")),
            },
            "tokenhub: flash in $0.15 / hit none listed / out $0.3; "
            "pro in $1.8 / hit none listed / out $3.6 (USD per 1M tokens)",
        ),
    ],
)
def test_describe_prices(gateway: str, prices: dict[str, Price], expected: str) -> None:
    assert PriceTable(gateway, prices).describe() == expected  # type: ignore[arg-type]


def test_daily_csv_has_exact_dollars() -> None:
    rows = [
        DailyRow(date(2026, 11, 6), "deepseek-v4-flash", Metrics(2, 1, 10, 20, 30, 4, 194, 7)),
        DailyRow(date(2026, 11, 7), "deepseek-v4-pro", Metrics(1, 0, 0, 5, 6, 0, 1_234_567, 0)),
    ]
    assert daily_csv(rows).splitlines() == [
        "date,model,requests,thinking_requests,input_cache_hit_tokens,"
        "input_cache_miss_tokens,output_tokens,reasoning_tokens,cost_usd,saved_by_cache_usd",
        "2026-11-06,deepseek-v4-flash,2,1,10,20,30,4,0.000194,0.000007",
        "2026-11-07,deepseek-v4-pro,1,0,0,5,6,0,1.234567,0.000000",
    ]


def test_cost_markdown_lists_totals_models_people_and_prices() -> None:
    report = Report(
        period="7d",
        days=period_days("7d", date(2026, 11, 7)),
        total=Metrics(3, 2, 1_200_000, 300_000, 300_000, 50_000, 307_020, 399_980),
        by_model={
            "deepseek-v4-pro": Metrics(requests=1, cost=263_900, hit=800_000, miss=200_000),
            "deepseek-v4-flash": Metrics(requests=2, cost=43_120),
        },
        by_user={"U1": Metrics(requests=2, cost=300_000), "U2": Metrics(requests=1, cost=7_020)},
        by_channel={"C1": Metrics(requests=3, cost=307_020)},
        pricing=["deepseek: pro ..."],
    )
    text = cost_markdown(report, user=lambda u: f"<@{u}>", top_n=1)
    assert "**Cost, last 7 days** (2026-11-01 to 2026-11-07 UTC)" in text
    assert "- Spend: $0.3070" in text
    assert "- Requests: 3 (2 with thinking)" in text
    assert "- Input tokens: 1,500,000 (cache hit 1,200,000 / miss 300,000)" in text
    assert "- Output tokens: 300,000 (of which reasoning 50,000)" in text
    assert "- Cache hit ratio: 80.0%" in text
    assert "- Saved by cache: $0.4000" in text
    assert "| deepseek-v4-pro | 1 | 1,000,000 | 0 | $0.2639 |" in text
    assert "1. <@U1>: $0.3000 · 2 requests" in text
    assert "U2" not in text  # top 1 only
    assert "1. C1: $0.3070 · 3 requests" in text
    assert "Prices: deepseek: pro ..." in text


def test_empty_reports_say_so() -> None:
    days = [date(2026, 11, 7)]
    empty = Report("today", days, Metrics(), {}, {}, {})
    assert "No usage recorded in this period." in cost_markdown(empty)
    assert "No requests in this period." in usage_markdown("today", days, Metrics())


@pytest.mark.parametrize(
    ("caps", "user_today", "month", "admin", "line"),
    [
        (Caps(), 10, 10, True, ""),
        (
            Caps(user_daily=1_000_000),
            250_000,
            0,
            False,
            "Daily cap per person $1.00: you spent $0.2500 today (25%).",
        ),
        (Caps(workspace_monthly=1_000_000), 0, 900_000, False, ""),  # no figures for members
        (
            Caps(workspace_monthly=1_000_000),
            0,
            1_000_000,
            False,
            "The workspace reached its monthly cap; an admin can raise it.",
        ),
        (
            Caps(workspace_monthly=1_000_000),
            0,
            900_000,
            True,
            "Workspace monthly cap $1.00: $0.9000 spent (90%).",
        ),
    ],
)
def test_budget_line(caps: Caps, user_today: int, month: int, admin: bool, line: str) -> None:
    assert budget_line(caps, user_today, month, admin=admin) == line
