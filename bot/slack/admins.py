"""Admins on Slack: who they are, and the notices they get (budget alerts, failing answers).

Admins are `ADMIN_USER_IDS` plus the workspace's admins and owners per `users.info`, cached in
Redis (`keys.is_admin`) for `ADMIN_CACHE_S` so a command costs no Slack call most of the time.
"""

from __future__ import annotations

import time

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.contracts.errors import UpstreamError
from bot.contracts.thread import ThreadRef
from bot.deepseek.pricing import format_usd
from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.store import keys
from bot.usage.budgets import BudgetAlert
from bot.usage.reports import format_money

log = structlog.get_logger(__name__)

# Long enough that commands rarely call users.info, short enough that a promotion or
# demotion in Slack shows within minutes.
ADMIN_CACHE_S = 600
NOTICE_TTL_S = 3_600  # one failure notice per team and kind of failure an hour


class SlackAdmins:
    def __init__(self, settings: Settings, redis: Redis, client: AsyncWebClient) -> None:
        self._settings = settings
        self._redis = redis
        self._client = client
        self._noticed: dict[tuple[str, str], float] = {}  # (team, kind) -> last failure notice

    async def is_admin(self, team: str, user: str) -> bool:
        """True for ADMIN_USER_IDS and workspace admins/owners. If Slack cannot be asked,
        only ADMIN_USER_IDS count (and nothing is cached)."""
        if user in self._settings.admin_user_ids:
            return True
        key = keys.is_admin(team, user)
        cached = await self._redis.get(key)
        if cached is not None:
            return bool(cached == "1")
        try:
            resp = await self._client.users_info(user=user)
        except SLACK_ERRORS as exc:
            log.warning("users_info_failed", error=slack_error_code(exc))
            return False
        info = resp.get("user") or {}
        admin = any(info.get(k) for k in ("is_admin", "is_owner", "is_primary_owner"))
        await self._redis.set(key, "1" if admin else "0", ex=ADMIN_CACHE_S)
        return admin

    async def dm(self, user: str) -> str:
        """The id of the bot's DM with `user` (opened if needed)."""
        resp = await self._client.conversations_open(users=user)
        return str(resp["channel"]["id"])

    async def notify_budget(self, alert: BudgetAlert) -> None:
        """DM ADMIN_USER_IDS and whoever set the cap that the workspace reached `threshold`%
        of its monthly cap. Called once per alert (`Budgets` rate-limits)."""
        action = (
            "answers now move to Flash"
            if self._settings.over_budget_action == "flash"
            else "new questions are now refused"
        )
        if alert.threshold >= 100:
            text = (
                "The workspace reached its monthly DeepSeek cap of "
                f"{format_money(alert.cap_micros)} ({format_usd(alert.spent_micros)} spent "
                f"in {alert.month}): {action}. "
                "Raise it with `/deepseek budget workspace` and an amount, like `300/month`."
            )
        else:
            text = (
                f"The workspace has used {alert.threshold}% of its monthly DeepSeek cap: "
                f"{format_usd(alert.spent_micros)} of {format_money(alert.cap_micros)} "
                f"in {alert.month}. See `/deepseek cost month`."
            )
        recipients = sorted(self._settings.admin_user_ids | ({alert.set_by} - {""}))
        for user in recipients:
            try:
                await self._client.chat_postMessage(channel=await self.dm(user), text=text)
            except SLACK_ERRORS as exc:
                log.warning("budget_notice_failed", error=slack_error_code(exc))
        log.info("budget_notice_sent", threshold=alert.threshold, recipients=len(recipients))

    async def notify_failure(self, t: ThreadRef, error: UpstreamError) -> None:
        """DM ADMIN_USER_IDS that answers fail in a way they must fix (`notify_admins`), at
        most once an hour per team and kind of failure."""
        kind = type(error).__name__
        admins = sorted(self._settings.admin_user_ids)
        if not admins:
            return
        # Once an hour per kind across replicas (Redis); this process's own memory keeps
        # the promise for itself while Redis is down (StoreDown is one such kind).
        now = time.monotonic()
        last = self._noticed.get((t.team, kind))
        if last is not None and now - last < NOTICE_TTL_S:
            return
        try:
            first = await self._redis.set(
                keys.notice(t.team, f"upstream:{kind}"), "1", nx=True, ex=NOTICE_TTL_S
            )
        except (RedisError, OSError):
            first = True
        self._noticed[(t.team, kind)] = now
        if not first:
            return
        status = f", HTTP {error.status}" if error.status else ""
        text = (
            f"DeepSeek answers are failing in <#{t.channel}>: {error.user_message} "
            f"({kind}{status}; details in the bot's logs). "
            "I will not repeat this notice for an hour."
        )
        for admin in admins:
            try:
                await self._client.chat_postMessage(channel=await self.dm(admin), text=text)
            except SLACK_ERRORS as exc:
                log.warning("admin_notice_failed", error=slack_error_code(exc))
        log.info("admin_notice_sent", kind=kind, admins=len(admins))
