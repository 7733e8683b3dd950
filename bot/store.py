"""Opening the Redis connection (or the embedded in-process store) and small shared primitives."""

from __future__ import annotations

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from bot import keys
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
        # and a timer around every checkout and return, which at 200 concurrent streams
        # queued Redis commands behind each other (a round trip took 20-40 ms at p99 while
        # the event loop's own lag was 5 ms; bench/README.md, "Load"). The plain pool's
        # default cap of 100 is what made bursts fail, hence the higher cap above.
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
