"""Assembles the usage jobs over one Redis client with one clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from redis.asyncio import Redis

from bot.config import Settings
from bot.deepseek.pricing import PriceTable
from bot.usage.aggregates import UsageAggregates
from bot.usage.budgets import Budgets
from bot.usage.recorder import UsageRecorder
from bot.usage.report_reader import UsageReports
from bot.usage.reports import utc_day


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """The usage jobs of one process, each for the callers that need it: `recorder` (the
    engine records every upstream call), `budgets` (verdicts before a turn, caps set by
    commands, alerts to admins), `reports` (what commands and App Home show). Days are UTC
    days of one clock, `now`: pinning it pins them all."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        prices: PriceTable,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.now = now
        aggregates = UsageAggregates(redis, settings.usage_retention_days)
        self.budgets = Budgets(redis, settings, aggregates, today=self.today)
        self.recorder = UsageRecorder(redis, prices, aggregates, self.budgets)
        self.reports = UsageReports(aggregates, today=self.today)

    def today(self) -> date:
        return utc_day(self.now())
