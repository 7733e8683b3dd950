"""Records each upstream call's usage in the per-day aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from bot.config import ModelTier
from bot.contracts.stream import Usage
from bot.deepseek.pricing import PriceTable, billed_input
from bot.usage.aggregates import UsageAggregates
from bot.usage.budgets import BudgetAlert, Budgets
from bot.usage.reports import Metrics, utc_day


@dataclass(frozen=True, slots=True)
class UsageRecord:
    team: str
    user: str
    channel: str
    thread_ts: str
    tier: ModelTier
    model: str
    thinking: bool
    usage: Usage
    cost_micros: int  # what the engine billed for the call; stored as given
    at: datetime


class UsageRecorder:
    def __init__(
        self, redis: Redis, prices: PriceTable, aggregates: UsageAggregates, budgets: Budgets
    ) -> None:
        self._redis = redis
        self._prices = prices
        self._prices_line = prices.describe()
        self._aggregates = aggregates
        self._budgets = budgets

    async def record(self, rec: UsageRecord) -> BudgetAlert | None:
        """Add one upstream call to its UTC day's aggregates, with its cost on the month's
        budget meter, in one atomic MULTI. Returns the budget alert this call newly raised,
        if any. Raises redis errors."""
        day = utc_day(rec.at)
        u = rec.usage
        hit, miss = billed_input(u)
        call = Metrics(
            requests=1,
            thinking=int(rec.thinking),
            hit=hit,
            miss=miss,
            out=u.completion,
            reasoning=u.reasoning,
            cost=rec.cost_micros,
            saved=self._prices.saved_by_cache_micros(rec.tier, u),
        )
        members = {
            "model": rec.model,
            "user": rec.user,
            "channel": rec.channel,
            "thread": f"{rec.channel}/{rec.thread_ts}",
        }
        pipe = self._redis.pipeline(transaction=True)
        self._aggregates.queue_add(pipe, rec.team, day, call, members, self._prices_line)
        charged = self._budgets.queue_charge(pipe, rec.team, day, rec.cost_micros)
        return await self._budgets.alert_for(charged(await pipe.execute()))
