"""Per-user and per-channel answer settings (model, thinking, effort) and their precedence:
user, else channel, else the global default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from redis.asyncio import Redis

from bot import keys
from bot.config import Effort, ModelTier, Settings

Source = Literal["user", "channel", "default"]
FIELDS = ("model", "thinking", "effort")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    model: ModelTier
    thinking: bool
    effort: Effort
    sources: dict[str, Source]


class Prefs:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def effective(self, team: str, channel: str, user: str) -> TurnSettings:
        """The settings a turn runs with, and where each came from."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.user_prefs(team, user))
        pipe.hgetall(keys.channel_prefs(team, channel))
        user_prefs, chan_prefs = await pipe.execute()
        defaults = {
            "model": self._settings.default_model,
            "thinking": "on" if self._settings.default_thinking else "off",
            "effort": self._settings.default_effort,
        }
        values: dict[str, str] = {}
        sources: dict[str, Source] = {}
        for name in FIELDS:
            for source, layer in (("user", user_prefs), ("channel", chan_prefs)):
                if name in layer:
                    values[name], sources[name] = layer[name], cast(Source, source)
                    break
            else:
                values[name], sources[name] = defaults[name], "default"
        return TurnSettings(
            model=cast(ModelTier, values["model"]),
            thinking=values["thinking"] == "on",
            effort=cast(Effort, values["effort"]),
            sources=sources,
        )

    async def set_user(self, team: str, user: str, name: str, value: str) -> None:
        await self._redis.hset(keys.user_prefs(team, user), name, value)

    async def set_channel(self, team: str, channel: str, name: str, value: str) -> None:
        await self._redis.hset(keys.channel_prefs(team, channel), name, value)
