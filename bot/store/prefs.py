"""Per-user and per-channel answer settings (model, thinking, effort) and their precedence:
the user's own choice, else the channel's default, else the global default from settings.

Stored in Redis as small hashes (`keys.user_prefs`, `keys.channel_prefs`) with values
`pro|flash`, `on|off`, `low|high|max`. Every turn reads them, so they are cached in process for
a short while (`cache_seconds`, 2 s by default): a change made through this process applies to
the next turn at once (the cache entry is dropped on write); one made through another process
applies within `cache_seconds`. A stored value that is not valid is ignored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast, get_args

from redis.asyncio import Redis

from bot.config import Effort, ModelTier, Settings
from bot.store import keys

Source = Literal["user", "channel", "default"]
PrefName = Literal["model", "thinking", "effort"]
Scope = Literal["user", "channel"]
FIELDS: tuple[PrefName, ...] = ("model", "thinking", "effort")
VALUES: dict[PrefName, tuple[str, ...]] = {
    "model": get_args(ModelTier),
    "thinking": ("on", "off"),
    "effort": get_args(Effort),
}


@dataclass(frozen=True, slots=True)
class TurnSettings:
    model: ModelTier
    thinking: bool
    effort: Effort
    sources: dict[str, Source]


class _TTLCache:
    """A small bounded TTL cache of Redis hashes. Written here (not a dependency) because it
    is a dozen lines: an OrderedDict in insertion order, oldest evicted first."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def get(self, key: str) -> dict[str, str] | None:
        item = self._items.get(key)
        if item is None or item[0] <= self.clock():
            return None
        return item[1]

    def put(self, key: str, value: dict[str, str]) -> None:
        if self.ttl <= 0:
            return
        self._items.pop(key, None)
        self._items[key] = (self.clock() + self.ttl, value)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


class Prefs:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        cache_seconds: float = 2.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._cache = _TTLCache(cache_seconds, cache_size, clock)

    def defaults(self) -> dict[PrefName, str]:
        s = self._settings
        return {
            "model": s.default_model,
            "thinking": "on" if s.default_thinking else "off",
            "effort": s.default_effort,
        }

    async def _layers(self, names: list[str]) -> list[dict[str, str]]:
        """The hashes at `names`, from the cache or in one pipelined round trip."""
        found = [self._cache.get(n) for n in names]
        missing = [n for n, v in zip(names, found, strict=True) if v is None]
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for name in missing:
                pipe.hgetall(name)
            fetched = dict(zip(missing, await pipe.execute(), strict=True))
            for name, value in fetched.items():
                self._cache.put(name, value)
            found = [v if v is not None else fetched[n] for n, v in zip(names, found, strict=True)]
        return [v or {} for v in found]

    async def effective(self, team: str, channel: str, user: str) -> TurnSettings:
        """The settings a turn runs with, and where each came from. `channel` may be "" (no
        channel, e.g. App Home): then only the user's choices and the defaults apply."""
        names = [keys.user_prefs(team, user)]
        if channel:
            names.append(keys.channel_prefs(team, channel))
        layers = await self._layers(names)
        user_prefs, chan_prefs = layers[0], layers[1] if channel else {}
        defaults = self.defaults()
        values: dict[str, str] = {}
        sources: dict[str, Source] = {}
        for name in FIELDS:
            for source, layer in (("user", user_prefs), ("channel", chan_prefs)):
                if layer.get(name) in VALUES[name]:
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

    async def stored(self, team: str, scope: Scope, owner: str) -> dict[str, str]:
        """What is stored for one user or channel (uncached), e.g. {"model": "pro"}."""
        raw = await self._redis.hgetall(self._key(team, scope, owner))
        return {name: str(raw[name]) for name in FIELDS if raw.get(name) in VALUES[name]}

    async def set(
        self, team: str, scope: Scope, owner: str, name: PrefName, value: str | None
    ) -> None:
        """Store one setting for a user or channel; `value` None removes it (back to the next
        layer). Raises ValueError for a value outside `VALUES[name]`."""
        key = self._key(team, scope, owner)
        if value is None:
            await self._redis.hdel(key, name)
        elif value in VALUES[name]:
            await self._redis.hset(key, name, value)
        else:
            raise ValueError(f"{name}={value!r}")
        self._cache.drop(key)

    async def clear(self, team: str, scope: Scope, owner: str) -> None:
        """Remove every setting of a user or channel."""
        key = self._key(team, scope, owner)
        await self._redis.delete(key)
        self._cache.drop(key)

    @staticmethod
    def _key(team: str, scope: Scope, owner: str) -> str:
        return keys.user_prefs(team, owner) if scope == "user" else keys.channel_prefs(team, owner)
