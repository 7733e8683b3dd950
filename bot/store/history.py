"""Thread memory in Redis: the exact message list sent upstream, append-only, with a TTL.

Messages are stored one JSON string per list item, serialised once (`messages.dumps`) and sent
back as stored, so every turn repeats earlier bytes exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.contracts.messages import Message, dumps
from bot.contracts.thread import ThreadRef
from bot.store import keys


@dataclass(frozen=True, slots=True)
class ThreadState:
    messages: list[Message]
    calibration: tuple[int, int] | None  # (prompt_tokens, request chars) last reported


class History:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl = ttl_s

    async def load(self, t: ThreadRef) -> ThreadState:
        """The stored messages (oldest first) and the token calibration; refreshes the TTL."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.lrange(keys.history(t), 0, -1)
        pipe.hmget(keys.thread_meta(t), "prompt_tokens", "prompt_chars")
        self._expire(pipe, t)
        raw, (tokens, chars), *_ = await pipe.execute()
        calibration = (int(tokens), int(chars)) if tokens and chars else None
        return ThreadState([json.loads(r) for r in raw], calibration)

    async def append(
        self,
        t: ThreadRef,
        messages: Sequence[Message],
        *,
        calibration: tuple[int, int] | None = None,
    ) -> None:
        """Append a whole turn atomically (one MULTI), so a crash never stores half a turn."""
        if not messages:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(keys.history(t), *[dumps(m) for m in messages])
        if calibration:
            pipe.hset(
                keys.thread_meta(t),
                mapping={"prompt_tokens": calibration[0], "prompt_chars": calibration[1]},
            )
        self._expire(pipe, t)
        await pipe.execute()

    async def replace(self, t: ThreadRef, messages: Sequence[Message]) -> None:
        """Replace the whole history (after a trim or a rebuild from Slack)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.history(t))
        if messages:
            pipe.rpush(keys.history(t), *[dumps(m) for m in messages])
        pipe.hdel(keys.thread_meta(t), "prompt_tokens", "prompt_chars")
        self._expire(pipe, t)
        await pipe.execute()

    def _expire(self, pipe: Pipeline, t: ThreadRef) -> None:
        for key in (keys.history(t), keys.thread_meta(t)):
            pipe.expire(key, self._ttl)
