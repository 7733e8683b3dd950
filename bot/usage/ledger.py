"""The usage ledger: every upstream call, aggregated per UTC day, and the spending caps.

Storage (all keys of a team share the `{team}` hash tag, so one MULTI may touch them all):
- `keys.usage(team, day, dim)`: HASH of integer counters per day, for `dim` in total, model,
  user, channel, thread (see `reports.METRICS`). The total hash also keeps `prices`: the
  gateway and price table last used that day, so a report can say what it was priced at.
- `keys.usage_month(team, month)`: the month's running `cost`, read by the workspace cap.
- `keys.budgets(team)`: the caps (micro-dollars) and who set them.
Counters expire `usage_retention_days` after their day. Costs are stored as they were
computed at the time, so a price change applies from then on and never rewrites history.

Budget alerts: `record` returns a `BudgetAlert` when the workspace's month-to-date spend first
reaches 80% (or 100%) of its cap, claimed once per team, month, cap and threshold through
`keys.notice`. Surfaces that can tell admins (the Slack app) subscribe with
`on_budget_alert`; their callbacks run as background tasks so a turn never waits on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import structlog
from redis.asyncio import Redis

from bot.config import ModelTier, Settings
from bot.contracts.stream import Usage
from bot.deepseek.pricing import PriceTable
from bot.store import keys
from bot.usage.reports import (
    METRICS,
    DailyRow,
    Metrics,
    Period,
    Report,
    call_metrics,
    describe_prices,
    month_of,
    parse_members,
    parse_total,
    period_days,
)

log = structlog.get_logger(__name__)

Verdict = Literal["ok", "flash", "refuse"]
BudgetScope = Literal["user", "workspace"]
DIMENSIONS = ("total", "model", "user", "channel", "thread")
# Highest first: one call that jumps past both thresholds reports only the higher one.
ALERT_THRESHOLDS = (100, 80)
_NOTICE_TTL_S = 40 * 86_400  # longer than any month: the marker outlives its month
_BUDGET_FIELDS: dict[BudgetScope, str] = {"user": "user_daily", "workspace": "workspace_monthly"}

# Sums the integer fields of KEYS (hashes) server-side and returns the merged hash as a flat
# [field, value, ...] array; non-numeric fields (the day's `prices`) are skipped. A 30-day
# report then moves one merged hash per dimension instead of thirty: with redis-py's pure-
# Python reply parser the transfer, not Redis, was the cost (bench/ledger.py). Lua numbers
# are doubles, exact to 2**53: 9e15 micro-dollars or tokens. All KEYS share the `{team}`
# hash tag, so this stays legal on Redis Cluster.
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


@dataclass(frozen=True, slots=True)
class Budgets:
    """Caps in micro-dollars (None: no cap) and the user id that set each."""

    user_daily: int | None = None
    workspace_monthly: int | None = None
    user_daily_by: str = ""
    workspace_monthly_by: str = ""


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """The workspace's spend this month reached `threshold`% of its cap."""

    team: str
    month: str  # YYYY-MM
    threshold: int  # 80 or 100
    spent_micros: int
    cap_micros: int
    set_by: str  # who set the cap ("" if unknown)


AlertListener = Callable[[BudgetAlert], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _day_of(at: datetime) -> date:
    return at.astimezone(UTC).date() if at.tzinfo else at.date()


def _micros(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class Ledger:
    def __init__(
        self, redis: Redis, settings: Settings, *, now: Callable[[], datetime] = _utc_now
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._prices = PriceTable.from_settings(settings)
        self._prices_label = describe_prices(self._prices.gateway, self._prices.prices)
        self._retention_s = settings.usage_retention_days * 86_400
        self._merge = redis.register_script(_MERGE_LUA)
        self._listeners: list[AlertListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.now = now  # the clock; tests may pin it

    def today(self) -> date:
        return _day_of(self.now())

    # --- writing --------------------------------------------------------------------------

    async def record(self, rec: UsageRecord) -> BudgetAlert | None:
        """Add one upstream call to its day's aggregates in one atomic MULTI (HINCRBYs on the
        total, model, user, channel and thread hashes, plus the month's cost), refresh their
        expiry, and check the workspace cap. Returns the alert this call newly triggered, if
        any (listeners are told too). Raises redis errors."""
        day = _day_of(rec.at)
        day_s, month = day.isoformat(), month_of(day)
        u = rec.usage
        # A gateway that reports only prompt tokens gives no split: count them all as misses,
        # as `PriceTable.cost_micros` bills them.
        hit, miss = (u.cache_hit, u.cache_miss) if u.cache_hit + u.cache_miss else (0, u.prompt)
        counters = call_metrics(
            hit=hit,
            miss=miss,
            out=u.completion,
            reasoning=u.reasoning,
            thinking=rec.thinking,
            cost=rec.cost_micros,
            saved=self._prices.saved_by_cache_micros(rec.tier, hit),
        ).as_counters()
        members = {
            "model": rec.model,
            "user": rec.user,
            "channel": rec.channel,
            "thread": f"{rec.channel}/{rec.thread_ts}",
        }
        # Threads are many; they keep only what a "which thread cost most" question needs.
        thread_metrics = ("requests", "cost")
        expire_day = datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=1)
        expire_at = int(expire_day.timestamp()) + self._retention_s
        month_key = keys.usage_month(rec.team, month)

        pipe = self._redis.pipeline(transaction=True)
        total_key = keys.usage(rec.team, day_s, "total")
        for metric, n in counters.items():
            pipe.hincrby(total_key, metric, n)
        for dim, member in members.items():
            dim_key = keys.usage(rec.team, day_s, dim)
            for metric, n in counters.items():
                if dim != "thread" or metric in thread_metrics:
                    pipe.hincrby(dim_key, f"{member}:{metric}", n)
        pipe.hset(total_key, "prices", self._prices_label)
        for dim in DIMENSIONS:
            pipe.expireat(keys.usage(rec.team, day_s, dim), expire_at)
        pipe.hincrby(month_key, "cost", rec.cost_micros)
        pipe.expireat(month_key, expire_at + 31 * 86_400)
        pipe.hmget(keys.budgets(rec.team), "workspace_monthly", "workspace_monthly_by")
        results = await pipe.execute()
        month_cost = int(results[-3])
        cap, set_by = _micros(results[-1][0]), results[-1][1] or ""
        if cap is None or cap <= 0 or month_cost * 100 < cap * ALERT_THRESHOLDS[-1]:
            return None
        return await self._claim_alert(rec.team, month, month_cost, cap, set_by)

    async def _claim_alert(
        self, team: str, month: str, spent: int, cap: int, set_by: str
    ) -> BudgetAlert | None:
        reached = [t for t in ALERT_THRESHOLDS if spent * 100 >= cap * t]
        pipe = self._redis.pipeline(transaction=False)
        for t in reached:
            pipe.set(keys.notice(team, f"budget{t}:{month}:{cap}"), "1", nx=True, ex=_NOTICE_TTL_S)
        claimed = [t for t, ok in zip(reached, await pipe.execute(), strict=True) if ok]
        if not claimed:
            return None
        alert = BudgetAlert(team, month, claimed[0], spent, cap, set_by)
        log.info("budget_threshold", threshold=alert.threshold, spent=spent, cap=cap)
        for listener in self._listeners:
            task = asyncio.create_task(self._deliver(listener, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return alert

    async def _deliver(self, listener: AlertListener, alert: BudgetAlert) -> None:
        try:
            await listener(alert)
        except Exception:
            log.exception("budget_alert_failed", threshold=alert.threshold)

    def on_budget_alert(self, listener: AlertListener) -> None:
        """Call `listener` (in a background task) whenever `record` triggers an alert."""
        self._listeners.append(listener)

    # --- budgets ----------------------------------------------------------------------------

    async def budgets(self, team: str) -> Budgets:
        raw = await self._redis.hgetall(keys.budgets(team))
        return Budgets(
            user_daily=_micros(raw.get("user_daily")),
            workspace_monthly=_micros(raw.get("workspace_monthly")),
            user_daily_by=str(raw.get("user_daily_by", "")),
            workspace_monthly_by=str(raw.get("workspace_monthly_by", "")),
        )

    async def set_budget(self, team: str, scope: BudgetScope, micros: int | None, by: str) -> None:
        """Set (or with None, remove) the per-user daily or the workspace monthly cap."""
        name = _BUDGET_FIELDS[scope]
        key = keys.budgets(team)
        if micros is None:
            await self._redis.hdel(key, name, f"{name}_by")
        else:
            await self._redis.hset(key, mapping={name: micros, f"{name}_by": by})
        log.info("budget_set", scope=scope, micros=micros, by=by)

    async def spend(self, team: str, user: str) -> tuple[int, int]:
        """(the user's spend today, the workspace's spend this month), micro-dollars."""
        today = self.today()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.usage(team, today.isoformat(), "user"), f"{user}:cost")
        pipe.hget(keys.usage_month(team, month_of(today)), "cost")
        user_cost, month_cost = await pipe.execute()
        return _micros(user_cost) or 0, _micros(month_cost) or 0

    async def budget_verdict(self, team: str, user: str) -> Verdict:
        """Whether `user` may start a turn now: "ok"; at or over the user's daily cap or the
        workspace's monthly cap, "refuse" (or "flash" when OVER_BUDGET_ACTION=flash).
        One round trip."""
        today = self.today()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.budgets(team), "user_daily", "workspace_monthly")
        pipe.hget(keys.usage(team, today.isoformat(), "user"), f"{user}:cost")
        pipe.hget(keys.usage_month(team, month_of(today)), "cost")
        (user_cap, ws_cap), user_cost, month_cost = await pipe.execute()
        over = _over(_micros(user_cap), _micros(user_cost)) or _over(
            _micros(ws_cap), _micros(month_cost)
        )
        if not over:
            return "ok"
        verdict: Verdict = "flash" if self._settings.over_budget_action == "flash" else "refuse"
        log.info("over_budget", verdict=verdict)
        return verdict

    # --- reading ----------------------------------------------------------------------------

    async def report(self, team: str, period: Period) -> Report:
        """The workspace's usage over `period`, in one pipelined round trip however long the
        period: four server-side merges (total, model, user, channel over the period's days)
        and one HGET of `prices` per day. Never scans."""
        days = period_days(period, self.today())
        pipe = self._redis.pipeline(transaction=False)
        for dim in ("total", "model", "user", "channel"):
            day_keys = [keys.usage(team, day.isoformat(), dim) for day in days]
            await self._merge(keys=day_keys, client=pipe)
        for day in days:
            pipe.hget(keys.usage(team, day.isoformat(), "total"), "prices")
        total, by_model, by_user, by_channel, *labels = await pipe.execute()
        pricing: list[str] = []
        for label in labels:
            if label and label not in pricing:
                pricing.append(label)
        return Report(
            period=period,
            days=days,
            total=parse_total(_pairs(total)),
            by_model=parse_members(_pairs(by_model)),
            by_user=parse_members(_pairs(by_user)),
            by_channel=parse_members(_pairs(by_channel)),
            pricing=pricing,
        )

    async def user_usage(self, team: str, user: str, period: Period) -> tuple[list[date], Metrics]:
        """One person's counters over `period` (one pipelined HMGET per day)."""
        days = period_days(period, self.today())
        names = [f"{user}:{metric}" for metric in METRICS]
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hmget(keys.usage(team, day.isoformat(), "user"), names)
        total = Metrics()
        for values in await pipe.execute():
            total += Metrics(*(_micros(v) or 0 for v in values))
        return days, total

    async def daily_rows(self, team: str, period: Period) -> list[DailyRow]:
        """Rows per day and model with usage, oldest day first (for the CSV export)."""
        days = period_days(period, self.today())
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.usage(team, day.isoformat(), "model"))
        rows: list[DailyRow] = []
        for day, raw in zip(days, await pipe.execute(), strict=True):
            for model, m in sorted(parse_members(raw).items()):
                if m.requests:
                    rows.append(DailyRow(day, model, m))
        return rows

    @property
    def prices_label(self) -> str:
        """The gateway and price table this process records usage with."""
        return self._prices_label


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _over(cap: int | None, spent: int | None) -> bool:
    return cap is not None and (spent or 0) >= cap
