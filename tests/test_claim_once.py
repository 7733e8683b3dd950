"""claim_once under concurrency: of several deliveries of one event, exactly one wins."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.store.claims import claim_once


async def test_concurrent_claims_have_exactly_one_winner(redis: Redis) -> None:
    # Slack's retry and the first delivery reach two replicas at once: the same ids, claimed
    # concurrently. Neither may both win nor both lose (then nobody answers).
    for n in range(200):
        ids = [f"event:Ev{n}", f"ts:C1:1700000000.{n:06d}"]
        wins = await asyncio.gather(*(claim_once(redis, "T1", ids) for _ in range(3)))
        assert wins.count(True) == 1, (n, wins)


async def test_deliveries_sharing_one_id_have_one_winner(redis: Redis) -> None:
    # One message delivered as app_mention and as message.channels: other event ids, the
    # same message ts.
    for n in range(200):
        ts = f"ts:C1:1700000001.{n:06d}"
        wins = await asyncio.gather(
            claim_once(redis, "T1", [f"event:A{n}", ts]),
            claim_once(redis, "T1", [f"event:B{n}", ts]),
        )
        assert wins.count(True) == 1, (n, wins)


async def test_a_claim_is_all_or_nothing(redis: Redis) -> None:
    """A duplicate claims none of its ids, so a later delivery with only a new id wins."""
    assert await claim_once(redis, "T1", ["event:X", "ts:1"])
    assert not await claim_once(redis, "T1", ["event:Y", "ts:1"])
    assert await claim_once(redis, "T1", ["event:Y"])  # not taken by the refused claim
    assert not await claim_once(redis, "T1", ["event:X"])
    assert await claim_once(redis, "T2", ["event:X"])  # another workspace's delivery


async def test_claim_works_in_the_embedded_store() -> None:
    import fakeredis

    embedded = fakeredis.FakeAsyncRedis(decode_responses=True)
    assert await claim_once(embedded, "T1", ["event:E", "ts:1"])
    assert not await claim_once(embedded, "T1", ["ts:1"])
