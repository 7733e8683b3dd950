"""The record each answered or failed turn leaves behind, for the buttons under its answer.

One Redis hash per turn (`keys.turn`), kept as long as the thread's history. This module is the
only one that reads or writes its fields:
- `reasoning`: what "Show reasoning" opens;
- `question` and `user`: what "Retry" asks again, for whom;
- `model`: the tier that answered;
- `vote:<user>`: each person's feedback vote, so a changed vote moves between the per-model
  counts (`keys.feedback`) instead of counting twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from redis.asyncio import Redis

from bot.contracts.thread import ThreadRef
from bot.store import keys

Vote = Literal["up", "down"]


class TurnStore:
    """Named reads and writes of one turn's record. Redis errors propagate to the caller."""

    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl = ttl_s

    async def save_answer(
        self, t: ThreadRef, turn_id: str, *, question: str, reasoning: str, model: str
    ) -> None:
        """Keep a finished turn's question, reasoning and tier."""
        await self._save(t, turn_id, {"question": question, "reasoning": reasoning, "model": model})

    async def save_failure(self, t: ThreadRef, turn_id: str, *, question: str, user: str) -> None:
        """Keep a failed turn's question and asker, for "Retry"."""
        await self._save(t, turn_id, {"question": question, "user": user})

    async def question(self, t: ThreadRef, turn_id: str) -> str | None:
        """The turn's question, or None when the record is gone (expired or never kept)."""
        return await self._field(t, turn_id, "question")

    async def reasoning(self, t: ThreadRef, turn_id: str) -> str | None:
        """The turn's reasoning, or None when the record is gone."""
        return await self._field(t, turn_id, "reasoning")

    async def vote(self, t: ThreadRef, turn_id: str, *, user: str, vote: Vote, model: str) -> None:
        """Count `user`'s vote on the answer once per model; a changed vote moves from one
        count to the other, a repeated one changes nothing."""
        key = keys.turn(t, turn_id)
        previous = await self._redis.hget(key, f"vote:{user}")
        if previous == vote:
            return
        counts = keys.feedback(t.team, model or "unknown")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, f"vote:{user}", vote)
        pipe.hincrby(counts, vote, 1)
        if previous in ("up", "down"):
            pipe.hincrby(counts, str(previous), -1)
        await pipe.execute()

    async def _save(self, t: ThreadRef, turn_id: str, fields: dict[str, str]) -> None:
        key = keys.turn(t, turn_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping=cast(Mapping[Any, Any], fields))
        pipe.expire(key, self._ttl)
        await pipe.execute()

    async def _field(self, t: ThreadRef, turn_id: str, name: str) -> str | None:
        value = await self._redis.hget(keys.turn(t, turn_id), name)
        return None if value is None else str(value)
