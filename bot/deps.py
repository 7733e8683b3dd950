"""The shared parts every surface uses, built once by `build_deps`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.contracts.tool import Tool
from bot.core.engine import Engine
from bot.deepseek.client import DeepSeekClient
from bot.deepseek.pricing import PriceTable
from bot.store.connection import open_redis
from bot.store.prefs import Prefs
from bot.store.turns import TurnStore
from bot.usage.ledger import Ledger
from tools import build_tools


@dataclass
class Deps:
    settings: Settings
    redis: Redis
    http: httpx.AsyncClient  # the tools' shared pool (DeepSeek streams have their own)
    prices: PriceTable
    client: DeepSeekClient
    prefs: Prefs
    ledger: Ledger
    records: TurnStore  # each turn's record, for the buttons under its answer
    tools: list[Tool[Any]]
    engine: Engine
    slack: AsyncWebClient | None = None  # None outside Slack (the terminal)
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    owns_redis: bool = True  # False when the caller passed its own client in

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Mark the current task as an answer in flight, so shutdown waits for it."""
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self.inflight.discard(task)

    async def aclose(self) -> None:
        """Close the HTTP pools, and Redis unless the caller owns it."""
        await self.client.aclose()
        await self.http.aclose()
        if self.owns_redis:
            await self.redis.aclose()


def build_deps(
    settings: Settings, *, redis: Redis | None = None, slack: AsyncWebClient | None = None
) -> Deps:
    """Build the engine and everything it stands on. Connects lazily (nothing at call time)."""
    owns_redis = redis is None
    redis = redis if redis is not None else open_redis(settings)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.deepseek_read_timeout, connect=settings.deepseek_connect_timeout
        ),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )
    prices = PriceTable.from_settings(settings)
    client = DeepSeekClient(settings)
    prefs = Prefs(redis, settings)
    ledger = Ledger(redis, settings, prices)
    records = TurnStore(redis, settings.history_ttl_s)
    tools = build_tools(settings)
    engine = Engine(settings, redis, client, tools, prices, prefs, ledger, records, http)
    return Deps(
        settings,
        redis,
        http,
        prices,
        client,
        prefs,
        ledger,
        records,
        tools,
        engine,
        slack,
        owns_redis=owns_redis,
    )
