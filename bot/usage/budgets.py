"""Enforces the spending caps."""

# The only module that reads or writes `keys.budgets(team)` (the caps in micro-dollars, who set
# each), `keys.usage_month(team, month)` (the month's running `cost`: the workspace cap's
# meter) or the budget markers under `keys.notice`.
#
# Verdicts: at or over the user's daily cap, or the workspace's monthly cap, a turn is refused
# (or moved to Flash with OVER_BUDGET_ACTION=flash). Alerts: a recorded call that takes the
# month's spend to 80% (or 100%) of the workspace cap for the first time raises a
# `BudgetAlert`, claimed once per team, month, cap and threshold. Surfaces that can tell admins
# (the Slack app) subscribe with `on_alert`; their callbacks run as background tasks so a turn
# never waits on them.

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.config import Settings
from bot.store import keys
from bot.usage.aggregates import Replies, UsageAggregates, count, retained_until
from bot.usage.reports import month_of

log = structlog.get_logger(__name__)

Verdict = Literal["ok", "flash", "refuse"]
BudgetScope = Literal["user", "workspace"]
# Highest first: one call that jumps past both thresholds reports only the higher one.
ALERT_THRESHOLDS = (100, 80)
_NOTICE_TTL_S = 40 * 86_400  # longer than any month: the marker outlives its month
# The month's meter outlives the counters of its last day by a month.
_MONTH_AFTER_DAY_S = 31 * 86_400
_CAP_FIELDS: dict[BudgetScope, str] = {"user": "user_daily", "workspace": "workspace_monthly"}


@dataclass(frozen=True, slots=True)
class Caps:
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


@dataclass(frozen=True, slots=True)
class MonthCharge:
    """The workspace's spend this month right after a call was charged, with its cap then."""

    team: str
    month: str  # YYYY-MM
    spent: int
    cap: int | None
    set_by: str


def _micros(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _over(cap: int | None, spent: int) -> bool:
    return cap is not None and spent >= cap


class Budgets:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        aggregates: UsageAggregates,
        *,
        today: Callable[[], date],
    ) -> None:
        self._redis = redis
        self._over_budget_action = settings.over_budget_action
        self._retention_days = settings.usage_retention_days
        self._aggregates = aggregates
        self._today = today
        self._listeners: list[AlertListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def caps(self, team: str) -> Caps:
        raw = await self._redis.hgetall(keys.budgets(team))
        return Caps(
            user_daily=_micros(raw.get("user_daily")),
            workspace_monthly=_micros(raw.get("workspace_monthly")),
            user_daily_by=str(raw.get("user_daily_by", "")),
            workspace_monthly_by=str(raw.get("workspace_monthly_by", "")),
        )

    async def set_cap(self, team: str, scope: BudgetScope, micros: int | None, by: str) -> None:
        """Set (or with None, remove) the per-user daily or the workspace monthly cap."""
        name = _CAP_FIELDS[scope]
        key = keys.budgets(team)
        if micros is None:
            await self._redis.hdel(key, name, f"{name}_by")
        else:
            await self._redis.hset(key, mapping={name: micros, f"{name}_by": by})
        log.info("budget_set", scope=scope, micros=micros, by=by)

    async def spend(self, team: str, user: str) -> tuple[int, int]:
        """(the user's spend today, the workspace's spend this month), micro-dollars."""
        today = self._today()
        pipe = self._redis.pipeline(transaction=False)
        user_cost = self._aggregates.queue_user_cost(pipe, team, user, today)
        pipe.hget(keys.usage_month(team, month_of(today)), "cost")
        replies = await pipe.execute()
        return user_cost(replies), count(replies[-1])

    async def verdict(self, team: str, user: str) -> Verdict:
        """Whether `user` may start a turn now: "ok"; at or over the user's daily cap or the
        workspace's monthly cap, "refuse" (or "flash" when OVER_BUDGET_ACTION=flash).
        One round trip."""
        today = self._today()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.budgets(team), "user_daily", "workspace_monthly")
        user_cost = self._aggregates.queue_user_cost(pipe, team, user, today)
        pipe.hget(keys.usage_month(team, month_of(today)), "cost")
        replies = await pipe.execute()
        user_cap, ws_cap = replies[0]
        over = _over(_micros(user_cap), user_cost(replies)) or _over(
            _micros(ws_cap), count(replies[-1])
        )
        if not over:
            return "ok"
        verdict: Verdict = "flash" if self._over_budget_action == "flash" else "refuse"
        log.info("over_budget", verdict=verdict)
        return verdict

    def on_alert(self, listener: AlertListener) -> None:
        """Call `listener` (in a background task) for every alert `alert_for` raises."""
        self._listeners.append(listener)

    # --- charging a recorded call: queued on the recorder's MULTI -----------------------------

    def queue_charge(
        self, pipe: Pipeline, team: str, day: date, cost: int
    ) -> Callable[[Replies], MonthCharge]:
        """Queue on `pipe` adding `cost` (micro-dollars, spent on `day`) to its month's meter,
        with a read of the workspace cap; the returned function picks the outcome out of the
        pipeline's replies."""
        month = month_of(day)
        month_key = keys.usage_month(team, month)
        at = len(pipe)
        pipe.hincrby(month_key, "cost", cost)
        pipe.expireat(month_key, retained_until(day, self._retention_days) + _MONTH_AFTER_DAY_S)
        pipe.hmget(keys.budgets(team), "workspace_monthly", "workspace_monthly_by")

        def read(replies: Replies) -> MonthCharge:
            cap, set_by = replies[at + 2]
            return MonthCharge(team, month, int(replies[at]), _micros(cap), set_by or "")

        return read

    async def alert_for(self, charge: MonthCharge) -> BudgetAlert | None:
        """The alert `charge` newly raises, if any (listeners are told too)."""
        cap, spent = charge.cap, charge.spent
        if cap is None or cap <= 0 or spent * 100 < cap * ALERT_THRESHOLDS[-1]:
            return None
        reached = [t for t in ALERT_THRESHOLDS if spent * 100 >= cap * t]
        pipe = self._redis.pipeline(transaction=False)
        for t in reached:
            marker = keys.notice(charge.team, f"budget{t}:{charge.month}:{cap}")
            pipe.set(marker, "1", nx=True, ex=_NOTICE_TTL_S)
        claimed = [t for t, ok in zip(reached, await pipe.execute(), strict=True) if ok]
        if not claimed:
            return None
        alert = BudgetAlert(charge.team, charge.month, claimed[0], spent, cap, charge.set_by)
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
