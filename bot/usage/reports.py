"""Turns usage counters into reports as markdown or CSV (pure: no I/O, no clock)."""

# Markdown is standard markdown: the terminal prints it; Slack uses it as fallback text. Money
# is integer micro-dollars throughout; `bot.deepseek.pricing` turns it into dollars to print.

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from bot.deepseek.pricing import format_usd, micros_to_dollars

Period = Literal["today", "7d", "30d", "month"]

# The counters of one aggregate, in the order they are written and exported.
METRICS = ("requests", "thinking", "hit", "miss", "out", "reasoning", "cost", "saved")

Namer = Callable[[str], str]


def _plain(member: str) -> str:
    return member


@dataclass(frozen=True, slots=True)
class Metrics:
    """Counters of a set of upstream calls. Tokens are counts; `cost` and `saved` are
    micro-dollars, as `PriceTable.cost_micros` and `PriceTable.saved_by_cache_micros` gave
    them at the prices in force when each call was recorded."""

    requests: int = 0
    thinking: int = 0  # calls made with thinking on
    hit: int = 0  # input tokens served from the context cache
    miss: int = 0  # input tokens not in the cache
    out: int = 0  # output tokens, reasoning included
    reasoning: int = 0  # of which reasoning
    cost: int = 0
    saved: int = 0

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(*(getattr(self, f) + getattr(other, f) for f in METRICS))

    @property
    def input(self) -> int:
        return self.hit + self.miss

    @property
    def hit_ratio(self) -> float | None:
        """Share of input tokens that were cache hits; None when there was no input."""
        return self.hit / self.input if self.input else None

    def as_counters(self) -> dict[str, int]:
        """The non-zero counters (what one call adds to an aggregate)."""
        return {f: getattr(self, f) for f in METRICS if getattr(self, f)}


assert tuple(f.name for f in fields(Metrics)) == METRICS


def top(members: Mapping[str, Metrics], n: int) -> list[tuple[str, Metrics]]:
    """The `n` members with the highest cost (then most requests, then by name)."""
    ranked = sorted(members.items(), key=lambda kv: (-kv[1].cost, -kv[1].requests, kv[0]))
    return ranked[:n]


# --- periods ------------------------------------------------------------------------------


def period_days(period: Period, today: date) -> list[date]:
    """The UTC days a period covers, oldest first. `7d` and `30d` end with today; `month` is
    the calendar month so far."""
    if period == "today":
        return [today]
    count = {"7d": 7, "30d": 30}.get(period, today.day)
    return [today - timedelta(days=i) for i in range(count - 1, -1, -1)]


def period_title(period: Period) -> str:
    return {
        "today": "today",
        "7d": "last 7 days",
        "30d": "last 30 days",
        "month": "this month",
    }[period]


def period_span(days: list[date]) -> str:
    if len(days) == 1:
        return f"{days[0].isoformat()} UTC"
    return f"{days[0].isoformat()} to {days[-1].isoformat()} UTC"


def month_of(day: date) -> str:
    return day.strftime("%Y-%m")


def utc_day(at: datetime) -> date:
    """The UTC day of `at`; a naive `at` is taken to be UTC already."""
    return at.astimezone(UTC).date() if at.tzinfo else at.date()


# --- numbers ------------------------------------------------------------------------------


def format_money(micros: int) -> str:
    """Whole cents as `$5.00`; anything finer with four decimals (`$0.0123`)."""
    if micros % 10_000 == 0:
        return f"${micros_to_dollars(micros):.2f}"
    return format_usd(micros)


def format_int(n: int) -> str:
    return f"{n:,}"


def format_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.1f}%"


def percent_of(part: int, whole: int) -> int:
    """`part` as a whole percentage of `whole` (rounded down; 0 when `whole` is 0)."""
    return part * 100 // whole if whole > 0 else 0


def _csv_dollars(micros: int) -> str:
    """Exact dollars with six decimals, for CSV (`1234567` -> `1.234567`)."""
    return str(micros_to_dollars(micros).quantize(Decimal("0.000001")))


# --- reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """Workspace usage over a period."""

    period: Period
    days: list[date]
    total: Metrics
    by_model: dict[str, Metrics]
    by_user: dict[str, Metrics]
    by_channel: dict[str, Metrics]
    pricing: list[str] = field(default_factory=list)  # distinct price-table lines, oldest first


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: date
    model: str
    metrics: Metrics


def summary_lines(m: Metrics) -> list[tuple[str, str]]:
    """Label/value pairs shared by the markdown and Block Kit forms of a report."""
    return [
        ("Spend", format_usd(m.cost)),
        ("Requests", f"{format_int(m.requests)} ({format_int(m.thinking)} with thinking)"),
        (
            "Input tokens",
            f"{format_int(m.input)} (cache hit {format_int(m.hit)} / miss {format_int(m.miss)})",
        ),
        ("Output tokens", f"{format_int(m.out)} (of which reasoning {format_int(m.reasoning)})"),
        ("Cache hit ratio", format_ratio(m.hit_ratio)),
        ("Saved by cache", format_usd(m.saved)),
    ]


def member_figures(m: Metrics) -> str:
    """`$0.0123 · 4 requests`"""
    requests = "request" if m.requests == 1 else "requests"
    return f"{format_usd(m.cost)} · {format_int(m.requests)} {requests}"


def member_line(name: str, m: Metrics) -> str:
    return f"{name}: {member_figures(m)}"


def cost_markdown(
    report: Report, *, user: Namer = _plain, channel: Namer = _plain, top_n: int = 5
) -> str:
    """The admin cost report as standard markdown."""
    title = f"**Cost, {period_title(report.period)}** ({period_span(report.days)})"
    if not report.total.requests:
        return f"{title}\n\nNo usage recorded in this period."
    lines = [title, ""]
    lines += [f"- {label}: {value}" for label, value in summary_lines(report.total)]
    lines += ["", "| Model | Requests | Input | Output | Cost |", "|---|--:|--:|--:|--:|"]
    for model, m in top(report.by_model, len(report.by_model)):
        lines.append(
            f"| {model} | {format_int(m.requests)} | {format_int(m.input)} "
            f"| {format_int(m.out)} | {format_usd(m.cost)} |"
        )
    for heading, members, namer in (
        ("Top users", report.by_user, user),
        ("Top channels", report.by_channel, channel),
    ):
        lines += ["", f"**{heading}**"]
        lines += [
            f"{i}. {member_line(namer(k), m)}" for i, (k, m) in enumerate(top(members, top_n), 1)
        ]
    lines += ["", "Prices: " + (" | ".join(report.pricing) or "not recorded")]
    return "\n".join(lines)


def usage_markdown(period: Period, days: list[date], m: Metrics) -> str:
    """A person's own usage as standard markdown."""
    title = f"**Your usage, {period_title(period)}** ({period_span(days)})"
    if not m.requests:
        return f"{title}\n\nNo requests in this period."
    pairs = [p for p in summary_lines(m) if p[0] != "Saved by cache"]
    return "\n".join([title, "", *(f"- {label}: {value}" for label, value in pairs)])


CSV_HEADER = (
    "date",
    "model",
    "requests",
    "thinking_requests",
    "input_cache_hit_tokens",
    "input_cache_miss_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "saved_by_cache_usd",
)


def daily_csv(rows: Iterable[DailyRow]) -> str:
    """One row per day and model with usage; exact dollars (six decimals)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        m = r.metrics
        writer.writerow(
            (
                r.day.isoformat(),
                r.model,
                m.requests,
                m.thinking,
                m.hit,
                m.miss,
                m.out,
                m.reasoning,
                _csv_dollars(m.cost),
                _csv_dollars(m.saved),
            )
        )
    return buf.getvalue()
