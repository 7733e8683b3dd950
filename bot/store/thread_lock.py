"""One turn at a time per thread, across processes, in message order.

A redis-py lock (owner token, expiry, extended by a watchdog while the turn runs) serialises
turns; a ZSET of waiters scored by the message's Slack ts makes them take turns in the order
people wrote. A replica that dies loses its lock at expiry and its waiters' heartbeats lapse,
so nothing stays stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from bot.contracts.errors import ThreadBusy
from bot.contracts.thread import ThreadRef
from bot.store import keys

log = structlog.get_logger(__name__)

LOCK_TTL_S = 30.0
HEARTBEAT_TTL_S = 10
POLL_S = 0.05
RELEASE_RETRY_S = 0.2


# One acquisition attempt, in one round trip: stay in the queue (re-added if it was taken
# for dead), and take the lock if this turn is at the head and nobody holds it (then leave
# the queue); otherwise refresh this waiter's heartbeat.
# KEYS: lock, waiters, heartbeat. ARGV: token, lock ttl (ms), turn id, order, heartbeat ttl (s).
_TAKE_LUA = """
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head == ARGV[3] and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('DEL', KEYS[3])
  redis.call('EXPIRE', KEYS[2], 3600)
  return 1
end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[5])
return 0
"""


class _QueuedLock(Lock):
    """redis-py's Lock (token, release, extension) whose acquisition also takes the thread's
    queue into account, so an uncontended turn takes its thread in one attempt."""

    def __init__(self, redis: Redis, t: ThreadRef, turn_id: str, order: float, ttl_s: float):
        # thread_local=False: tasks on one loop share a thread, and each needs its own token.
        super().__init__(redis, keys.thread_lock(t), timeout=ttl_s, thread_local=False)
        self.waiters = keys.thread_waiters(t)
        self.heartbeat = keys.thread_waiter(t, turn_id)
        self.turn_id = turn_id
        self.order = order

    async def do_acquire(self, token: str | bytes) -> bool:
        take = self.redis.register_script(_TAKE_LUA)
        ttl_ms = int((self.timeout or LOCK_TTL_S) * 1000)
        args = [token, ttl_ms, self.turn_id, repr(self.order), HEARTBEAT_TTL_S]
        return bool(await take(keys=[self.name, self.waiters, self.heartbeat], args=args))


@contextlib.asynccontextmanager
async def thread_turn(
    redis: Redis,
    t: ThreadRef,
    turn_id: str,
    order: float,
    wait_s: float,
    *,
    ttl_s: float = LOCK_TTL_S,
) -> AsyncIterator[None]:
    """Hold the thread for one turn. Waits (up to `wait_s`) for every live waiter with an
    earlier `order` and for the current holder. Raises ThreadBusy on timeout. The lock
    expires `ttl_s` after its holder stops renewing it (a replica that died)."""
    waiters = keys.thread_waiters(t)
    lock = _QueuedLock(redis, t, turn_id, order, ttl_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    taken = False
    # Queue first, in a round trip of its own: messages that arrive together are all queued
    # before any of them looks at the head, so they run in the order people wrote them.
    pipe = redis.pipeline(transaction=False)
    pipe.zadd(waiters, {turn_id: order})
    pipe.set(lock.heartbeat, "1", ex=HEARTBEAT_TTL_S)
    await pipe.execute()
    try:
        while not (taken := await lock.acquire(blocking=False)):
            head = cast(list[str], await redis.zrange(waiters, 0, 0))
            other = head[0] if head and head[0] != turn_id else None
            if other and not await redis.exists(keys.thread_waiter(t, other)):
                await redis.zrem(waiters, other)  # its replica died while waiting
                continue
            if loop.time() > deadline:
                raise ThreadBusy(f"thread busy for {wait_s:.0f}s")
            await asyncio.sleep(POLL_S)
    finally:
        if not taken:  # leave the queue (taking the lock left it already)
            pipe = redis.pipeline(transaction=False)
            pipe.zrem(waiters, turn_id)
            pipe.delete(lock.heartbeat)
            pipe.expire(waiters, 3600)
            await pipe.execute()
    watchdog = asyncio.create_task(_keep(lock))
    try:
        yield
    finally:
        watchdog.cancel()
        try:
            await lock.release()
        except LockError:
            pass  # expired: someone else may hold it now
        except (RedisError, OSError):
            # Redis is down (or restarting). Release once it is back rather than leaving the
            # thread stuck until expiry; an append-only Redis replays the lock key.
            _pending.add(asyncio.create_task(_release_later(lock)))


_pending: set[asyncio.Task[None]] = set()


async def _release_later(lock: Lock) -> None:
    try:
        for _ in range(int((lock.timeout or LOCK_TTL_S) / RELEASE_RETRY_S)):
            await asyncio.sleep(RELEASE_RETRY_S)
            try:
                await lock.release()
                return
            except LockError:
                return
            except (RedisError, OSError):
                continue
    finally:
        task = asyncio.current_task()
        if task is not None:
            _pending.discard(task)


async def _keep(lock: Lock) -> None:
    """Extend the lock while the turn runs, so a long answer keeps the thread."""
    while True:
        await asyncio.sleep((lock.timeout or LOCK_TTL_S) / 3)
        try:
            await lock.reacquire()
        except Exception as exc:  # the turn goes on; a second turn may start after expiry
            log.warning("thread_lock_lost", error=type(exc).__name__)
            return
