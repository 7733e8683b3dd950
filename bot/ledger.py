"""The usage ledger: every upstream call, aggregated per day (provisional; see issue 7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from redis.asyncio import Redis

from bot import keys
from bot.config import ModelTier, Settings
from bot.events import Usage

Verdict = Literal["ok", "flash", "refuse"]


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
    cost_micros: int
    at: datetime


class Ledger:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def record(self, rec: UsageRecord) -> None:
        """Add one upstream call to the day's aggregates (atomic HINCRBYs, one round trip)."""
        day = rec.at.strftime("%Y-%m-%d")
        pipe = self._redis.pipeline(transaction=False)
        key = keys.usage(rec.team, day, "total")
        pipe.hincrby(key, "requests", 1)
        pipe.hincrby(key, "cost", rec.cost_micros)
        await pipe.execute()

    async def budget_verdict(self, team: str, user: str) -> Verdict:
        """Whether `user` may start a turn now: ok, move to flash, or refuse."""
        return "ok"
