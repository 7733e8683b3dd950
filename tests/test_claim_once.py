"""claim_once under concurrency: of several deliveries of one event, exactly one wins."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.store import claim_once


async def test_concurrent_claims_have_exactly_one_winner(redis: Redis) -> None:
    # Slack's retry and the first delivery reach two replicas at once: the same ids, claimed
    # concurrently. Neither may both win nor both lose (then nobody answers).
    for n in range(200):
        ids = [f"event:Ev{n}", f"ts:C1:1700000000.{n:06d}"]
        wins = await asyncio.gather(*(claim_once(redis, ids) for _ in range(3)))
        assert wins.count(True) == 1, (n, wins)


async def test_deliveries_sharing_one_id_have_one_winner(redis: Redis) -> None:
    # One message delivered as app_mention and as message.channels: other event ids, the
    # same message ts.
    for n in range(200):
        ts = f"ts:C1:1700000001.{n:06d}"
        wins = await asyncio.gather(
            claim_once(redis, [f"event:A{n}", ts]), claim_once(redis, [f"event:B{n}", ts])
        )
        assert wins.count(True) == 1, (n, wins)
