"""Opening the Redis connection (or the embedded in-process store) and small shared primitives."""

from __future__ import annotations

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from bot import keys
from bot.config import Settings

log = structlog.get_logger(__name__)

REDIS_MAX_CONNECTIONS = 100
REDIS_POOL_WAIT_S = 10.0


def open_redis(settings: Settings) -> Redis:
    """A Redis client for REDIS_URL, else an embedded store (fakeredis, same API, one process,
    nothing kept across restarts). Connects lazily: nothing happens until the first command."""
    if settings.redis_url:
        # A blocking pool: under a burst (hundreds of turns polling thread locks) a command
        # waits for a free connection instead of failing with MaxConnectionsError, which
        # redis-py's default pool (100 connections) raises at once.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=5,
            socket_timeout=10,
            retry_on_timeout=True,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_POOL_WAIT_S,
        )
        return Redis.from_pool(pool)
    import fakeredis

    log.warning("embedded_store", note="REDIS_URL unset: one process, nothing kept on restart")
    redis: Redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    return redis


async def redis_ok(redis: Redis) -> bool:
    """True when Redis answers a PING."""
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


async def claim_once(redis: Redis, delivery_ids: list[str], ttl_s: int = 86_400) -> bool:
    """Claim a Slack delivery across retries and replicas. True for the first claimant of
    every id; False if any id was already claimed (the delivery is a duplicate)."""
    # Stop at the first id someone else holds. Claiming the rest anyway would let two
    # concurrent claimants each take one id and both lose (nobody answers). Callers list ids
    # in one order (event id first), so the first to finish the list wins.
    for delivery_id in delivery_ids:
        if not await redis.set(keys.seen(delivery_id), "1", nx=True, ex=ttl_s):
            return False
    return True
