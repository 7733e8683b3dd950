"""Settings precedence (user, channel, default) and the short in-process cache, on real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.store import keys
from bot.store.prefs import Prefs
from tests.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def prefs_for(redis: Redis, clock: Clock | None = None, **overrides: object) -> Prefs:
    settings = make_settings(None, None, **overrides)
    return Prefs(redis, settings, clock=clock or Clock())


async def test_defaults_come_from_settings(redis: Redis) -> None:
    prefs = prefs_for(redis, default_model="pro", default_thinking=False, default_effort="max")
    eff = await prefs.effective("T1", "C1", "U1")
    assert (eff.model, eff.thinking, eff.effort) == ("pro", False, "max")
    assert eff.sources == {"model": "default", "thinking": "default", "effort": "default"}


async def test_user_beats_channel_beats_default(redis: Redis) -> None:
    prefs = prefs_for(redis)
    await prefs.set("T1", "channel", "C1", "model", "pro")
    await prefs.set("T1", "channel", "C1", "effort", "low")
    await prefs.set("T1", "user", "U1", "effort", "max")
    eff = await prefs.effective("T1", "C1", "U1")
    assert (eff.model, eff.thinking, eff.effort) == ("pro", True, "max")
    assert eff.sources == {"model": "channel", "thinking": "default", "effort": "user"}
    # Another channel: only the user's own choice follows them.
    other = await prefs.effective("T1", "C2", "U1")
    assert (other.model, other.effort) == ("flash", "max")
    assert other.sources["model"] == "default"
    # Another person in C1 gets the channel's defaults.
    bob = await prefs.effective("T1", "C1", "U2")
    assert (bob.model, bob.effort) == ("pro", "low")
    # No channel (App Home): the user's choices and the defaults.
    home = await prefs.effective("T1", "", "U1")
    assert home.sources == {"model": "default", "thinking": "default", "effort": "user"}


async def test_clearing_falls_back_to_the_next_layer(redis: Redis) -> None:
    prefs = prefs_for(redis)
    await prefs.set("T1", "channel", "C1", "model", "pro")
    await prefs.set("T1", "user", "U1", "model", "flash")
    assert (await prefs.effective("T1", "C1", "U1")).sources["model"] == "user"
    await prefs.set("T1", "user", "U1", "model", None)
    eff = await prefs.effective("T1", "C1", "U1")
    assert (eff.model, eff.sources["model"]) == ("pro", "channel")
    await prefs.clear("T1", "channel", "C1")
    assert (await prefs.effective("T1", "C1", "U1")).sources["model"] == "default"


async def test_invalid_stored_values_are_ignored(redis: Redis) -> None:
    prefs = prefs_for(redis)
    await redis.hset(keys.user_prefs("T1", "U1"), mapping={"model": "gpt5", "thinking": "off"})
    eff = await prefs.effective("T1", "C1", "U1")
    assert (eff.model, eff.thinking) == ("flash", False)
    assert eff.sources["model"] == "default"
    assert await prefs.stored("T1", "user", "U1") == {"thinking": "off"}
    with pytest.raises(ValueError):
        await prefs.set("T1", "user", "U1", "effort", "11")


async def test_a_change_applies_to_the_next_turn(redis: Redis) -> None:
    clock = Clock()
    here = prefs_for(redis, clock)  # this process
    there = prefs_for(redis, clock)  # another replica
    assert (await here.effective("T1", "C1", "U1")).model == "flash"
    assert (await there.effective("T1", "C1", "U1")).model == "flash"
    await here.set("T1", "user", "U1", "model", "pro")
    # The process that made the change sees it at once ...
    assert (await here.effective("T1", "C1", "U1")).model == "pro"
    # ... another one within the cache lifetime (2 s).
    assert (await there.effective("T1", "C1", "U1")).model == "flash"
    clock.t += 2.01
    assert (await there.effective("T1", "C1", "U1")).model == "pro"


async def test_cached_reads_do_not_touch_redis(redis: Redis) -> None:
    prefs = prefs_for(redis)
    await prefs.effective("T1", "C1", "U1")
    await redis.config_resetstat()
    for _ in range(5):
        await prefs.effective("T1", "C1", "U1")
    stats = await redis.info("commandstats")
    assert "cmdstat_hgetall" not in stats


async def test_cache_is_bounded(redis: Redis) -> None:
    settings = make_settings(None, None)
    prefs = Prefs(redis, settings, cache_size=3, clock=Clock())
    for i in range(10):
        await prefs.effective("T1", "", f"U{i}")
    assert len(prefs._cache._items) == 3
