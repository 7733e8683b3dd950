"""Opening the Redis connection, or the embedded in-process store, and asking whether it answers."""

from __future__ import annotations

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from bot.config import Settings

log = structlog.get_logger(__name__)

# Connections per process: one per Redis command in flight. A connection is held only for
# one command or pipeline, so even hundreds of concurrent turns use far fewer; the cap only
# stops a runaway from exhausting the server's clients.
REDIS_MAX_CONNECTIONS = 1000


def open_redis(settings: Settings) -> Redis:
    """A Redis client for REDIS_URL, else an embedded store (fakeredis, same API, one process,
    nothing kept across restarts). Connects lazily: nothing happens until the first command."""
    if settings.redis_url:
        # The plain pool, not redis-py's BlockingConnectionPool: that one takes a Condition
        # and a timer around every checkout and return, which under many concurrent streams
        # queues Redis commands behind each other (figures in bench/README.md, "Design
        # figures"). The plain pool's default cap of 100 fails bursts, hence the higher cap.
        pool = ConnectionPool.from_url(
            settings.redis_url,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=5,
            socket_timeout=10,
            retry_on_timeout=True,
            max_connections=REDIS_MAX_CONNECTIONS,
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
