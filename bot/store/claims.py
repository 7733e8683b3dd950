"""Claiming a Slack delivery once, across Slack's retries and every replica."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.store import keys

# Claim every id of a delivery, or none if any is already claimed: atomically, so two
# deliveries racing for overlapping ids can neither both win nor both lose.
_CLAIM_LUA = """
if redis.call('EXISTS', unpack(KEYS)) > 0 then return 0 end
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'EX', ARGV[1]) end
return 1
"""


async def claim_once(redis: Redis, team: str, delivery_ids: list[str], ttl_s: int = 86_400) -> bool:
    """Claim a Slack delivery across retries and replicas, in one round trip. True for the
    first claimant of all its ids; False if any id was already claimed (a duplicate)."""
    if not delivery_ids:
        return True
    claim = redis.register_script(_CLAIM_LUA)
    return bool(await claim(keys=[keys.seen(team, d) for d in delivery_ids], args=[ttl_s]))
