"""Reads a period's usage reports out of the per-day aggregates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from bot.usage.aggregates import UsageAggregates
from bot.usage.reports import DailyRow, Metrics, Period, Report, period_days


class UsageReports:
    def __init__(self, aggregates: UsageAggregates, *, today: Callable[[], date]) -> None:
        self._aggregates = aggregates
        self._today = today

    async def report(self, team: str, period: Period) -> Report:
        """The workspace's usage over `period`, in one round trip however long the period.
        Never scans."""
        days = period_days(period, self._today())
        totals = await self._aggregates.period(team, days)
        return Report(
            period=period,
            days=days,
            total=totals.total,
            by_model=totals.by_model,
            by_user=totals.by_user,
            by_channel=totals.by_channel,
            pricing=list(dict.fromkeys(line for line in totals.price_lines if line)),
        )

    async def user_usage(self, team: str, user: str, period: Period) -> tuple[list[date], Metrics]:
        """One person's counters over `period`."""
        days = period_days(period, self._today())
        return days, await self._aggregates.user_total(team, user, days)

    async def daily_rows(self, team: str, period: Period) -> list[DailyRow]:
        """Rows per day and model with usage, oldest day first (for the CSV export)."""
        days = period_days(period, self._today())
        rows: list[DailyRow] = []
        for day, models in zip(days, await self._aggregates.models_by_day(team, days), strict=True):
            for model, m in sorted(models.items()):
                if m.requests:
                    rows.append(DailyRow(day, model, m))
        return rows
