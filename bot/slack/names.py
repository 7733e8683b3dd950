"""People's display names by Slack user id, cached in Redis (`keys.display_name`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.store import keys

log = structlog.get_logger(__name__)

NAME_TTL_S = 86_400  # display names change rarely; a day-old name is fine


class DisplayNames:
    """Display names by user id, cached in Redis; `users.info` on a miss."""

    def __init__(self, redis: Redis, client: AsyncWebClient) -> None:
        self.redis = redis
        self.client = client

    async def get(self, team: str, users: Sequence[str]) -> dict[str, str]:
        """Names for `users` (one Redis round trip when all are cached). A user Slack does
        not know keeps no name (callers fall back to the markup's label or the id)."""
        users = list(dict.fromkeys(u for u in users if u))
        if not users:
            return {}
        try:
            cached = await self.redis.mget([keys.display_name(team, u) for u in users])
        except (RedisError, OSError):
            cached = [None] * len(users)  # the store is down: ask Slack, the turn goes on
        names = {u: str(n) for u, n in zip(users, cached, strict=True) if n}
        missing = [u for u in users if u not in names]
        if missing:
            found = await asyncio.gather(*(self._fetch(u) for u in missing))
            fresh = {u: n for u, n in zip(missing, found, strict=True) if n}
            if fresh:
                pipe = self.redis.pipeline(transaction=False)
                for user, name in fresh.items():
                    pipe.set(keys.display_name(team, user), name, ex=NAME_TTL_S)
                with contextlib.suppress(RedisError, OSError):
                    await pipe.execute()
            names.update(fresh)
        return names

    async def _fetch(self, user: str) -> str:
        try:
            resp = await self.client.users_info(user=user)
        except SLACK_ERRORS as exc:
            log.info("users_info_failed", error=slack_error_code(exc))
            return ""
        info = resp.get("user") or {}
        profile = info.get("profile") or {}
        for name in (profile.get("display_name"), profile.get("real_name"), info.get("name")):
            if isinstance(name, str) and name.strip():
                return name.strip()
        return ""
