"""Keeps the per-day usage counters in Redis."""

# The only module that reads or writes the fields of `keys.usage(team, day, dim)`, one HASH of
# integer counters per UTC day for each `dim` in DIMENSIONS. The total hash has one field per
# metric (see `reports.METRICS`) plus `prices`, the price-table line last recorded that day, so
# a report can say what it was priced at; the other hashes have `{member}:{metric}` fields.
# All keys of a team share the `{team}` hash tag, so one MULTI or script may touch them all.
# Counters expire `usage_retention_days` after their day. Costs are stored as computed at the
# time, so a price change applies from then on and never rewrites history.

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.store import keys
from bot.usage.reports import METRICS, Metrics

DIMENSIONS = ("total", "model", "user", "channel", "thread")
# Threads are many; they keep only what a "which thread cost most" question needs.
_THREAD_METRICS = ("requests", "cost")
_PRICES = "prices"

# Sums the integer fields of KEYS (hashes) server-side and returns the merged hash as a flat
# [field, value, ...] array; non-numeric fields (the day's `prices`) are skipped. A report's
# replies are then one hash per dimension however many days it covers. Lua numbers are
# doubles, exact to 2**53: 9e15 micro-dollars or tokens. All KEYS share the `{team}` hash
# tag, so this stays legal on Redis Cluster.
_MERGE_LUA = """
local acc, order = {}, {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local n = tonumber(flat[i + 1])
    if n then
      local f = flat[i]
      if acc[f] == nil then
        acc[f] = 0
        order[#order + 1] = f
      end
      acc[f] = acc[f] + n
    end
  end
end
local out = {}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = string.format('%.0f', acc[f])
end
return out
"""

Replies = list[Any]  # what `execute()` returned for a whole pipeline


def retained_until(day: date, retention_days: int) -> int:
    """Unix time at which the counters of `day` expire: `retention_days` after it ends."""
    day_end = datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1)
    return int(day_end.timestamp()) + retention_days * 86_400


def count(value: Any) -> int:
    """A counter as Redis returned it; missing or malformed counts as 0."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_total(raw: Mapping[str, str]) -> Metrics:
    """A total hash (fields are metric names) -> Metrics. Unknown fields are ignored."""
    return Metrics(*(count(raw.get(f)) for f in METRICS))


def parse_members(raw: Mapping[str, str]) -> dict[str, Metrics]:
    """A dimension hash (fields `{member}:{metric}`) -> Metrics per member. Members may
    contain `:`; metrics never do."""
    counters: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        member, _, metric = name.rpartition(":")
        if member and metric in METRICS:
            counters.setdefault(member, {})[metric] = count(value)
    return {m: Metrics(**c) for m, c in counters.items()}


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True, slots=True)
class PeriodTotals:
    """The counters of a run of days, added up."""

    total: Metrics
    by_model: dict[str, Metrics]
    by_user: dict[str, Metrics]
    by_channel: dict[str, Metrics]
    price_lines: list[str]  # each day's `prices` field ("" where none), oldest day first


class UsageAggregates:
    def __init__(self, redis: Redis, retention_days: int) -> None:
        self._redis = redis
        self._retention_days = retention_days
        self._merge = redis.register_script(_MERGE_LUA)

    # --- writing: queued on the caller's MULTI ----------------------------------------------

    def queue_add(
        self,
        pipe: Pipeline,
        team: str,
        day: date,
        call: Metrics,
        members: Mapping[str, str],
        prices: str,
    ) -> None:
        """Queue on `pipe` what one call adds to `day`: HINCRBYs on the total hash and on its
        member's fields of each other dimension (`members`: dimension -> member), the
        price-table line, the hashes' expiry."""
        day_s = day.isoformat()
        counters = call.as_counters()
        total_key = keys.usage(team, day_s, "total")
        for metric, n in counters.items():
            pipe.hincrby(total_key, metric, n)
        for dim, member in members.items():
            dim_key = keys.usage(team, day_s, dim)
            for metric, n in counters.items():
                if dim != "thread" or metric in _THREAD_METRICS:
                    pipe.hincrby(dim_key, f"{member}:{metric}", n)
        pipe.hset(total_key, _PRICES, prices)
        expire_at = retained_until(day, self._retention_days)
        for dim in DIMENSIONS:
            pipe.expireat(keys.usage(team, day_s, dim), expire_at)

    def queue_user_cost(
        self, pipe: Pipeline, team: str, user: str, day: date
    ) -> Callable[[Replies], int]:
        """Queue a read of what `user` spent on `day` (micro-dollars); the returned function
        picks it out of the pipeline's replies."""
        at = len(pipe)
        pipe.hget(keys.usage(team, day.isoformat(), "user"), f"{user}:cost")
        return lambda replies: count(replies[at])

    # --- reading ----------------------------------------------------------------------------

    async def period(self, team: str, days: list[date]) -> PeriodTotals:
        """The total, model, user and channel counters over `days`, in one pipelined round
        trip however many days: four server-side merges, one HGET of `prices` per day."""
        pipe = self._redis.pipeline(transaction=False)
        for dim in ("total", "model", "user", "channel"):
            day_keys = [keys.usage(team, day.isoformat(), dim) for day in days]
            await self._merge(keys=day_keys, client=pipe)
        for day in days:
            pipe.hget(keys.usage(team, day.isoformat(), "total"), _PRICES)
        total, by_model, by_user, by_channel, *lines = await pipe.execute()
        return PeriodTotals(
            total=parse_total(_pairs(total)),
            by_model=parse_members(_pairs(by_model)),
            by_user=parse_members(_pairs(by_user)),
            by_channel=parse_members(_pairs(by_channel)),
            price_lines=[line or "" for line in lines],
        )

    async def user_total(self, team: str, user: str, days: list[date]) -> Metrics:
        """One person's counters over `days` (one pipelined HMGET per day)."""
        names = [f"{user}:{metric}" for metric in METRICS]
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hmget(keys.usage(team, day.isoformat(), "user"), names)
        total = Metrics()
        for values in await pipe.execute():
            total += Metrics(*(count(v) for v in values))
        return total

    async def models_by_day(self, team: str, days: list[date]) -> list[dict[str, Metrics]]:
        """Each day's counters per model, in the order of `days` (one HGETALL per day)."""
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.usage(team, day.isoformat(), "model"))
        return [parse_members(raw) for raw in await pipe.execute()]
