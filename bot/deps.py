"""The shared parts every surface uses, built once by `bot.app.build_app`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.pricing import PriceTable


@dataclass
class Deps:
    settings: Settings
    redis: Redis
    http: httpx.AsyncClient  # shared pool: DeepSeek and the tools
    slack: AsyncWebClient
    prices: PriceTable
    inflight: set[asyncio.Task[object]] = field(default_factory=set)

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
