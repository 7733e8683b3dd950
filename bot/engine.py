"""The conversation engine: one turn of a thread, from a person's message to a stored answer.

Surfaces (Slack handlers, the terminal) build a `Turn` and consume `Engine.run(turn)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from bot.config import Settings
from bot.deepseek import DeepSeekClient
from bot.events import EngineEvent
from bot.keys import ThreadRef
from bot.ledger import Ledger
from bot.prefs import Prefs
from bot.pricing import PriceTable
from tools.base import SharedFile, Surface, Tool

# Rebuilds a thread's earlier messages (as {"role", "content"} dicts) when Redis has none.
Rebuild = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Turn:
    thread: ThreadRef
    user: str
    text: str  # cleaned text (mentions resolved, small shared files already inlined)
    speaker: str = ""  # display name; threads with several people see "Name: text"
    channel_kind: str = "channel"  # channel | im | assistant | terminal
    thread_note: str = ""  # facts stored once when a thread starts (date, channel name)
    format_note: str = ""  # the surface's formatting rules; part of the stable system prompt
    surface: Surface | None = None
    files: list[SharedFile] = field(default_factory=list)
    rebuild: Rebuild | None = None
    turn_id: str = ""  # set by the engine when empty


class Engine:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        client: DeepSeekClient,
        tools: list[Tool[Any]],
        prices: PriceTable,
        prefs: Prefs,
        ledger: Ledger,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.client = client
        self.tools = tools
        self.prices = prices
        self.prefs = prefs
        self.ledger = ledger
        self.http = http

    async def run(self, turn: Turn) -> AsyncIterator[EngineEvent]:
        """Run one turn: wait for the thread's lock, stream the answer (with tool rounds) as
        events, store the turn, record usage. Always ends with TurnDone or TurnFailed; if the
        consumer cancels, the partial answer is stored as interrupted."""
        raise NotImplementedError
        yield  # pragma: no cover
