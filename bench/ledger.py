"""Ledger costs on a real Redis: recording a call, a budget check, and 30-day reports over a
busy month.

Fills 30 days with calls from `--users` people in `--channels` channels, then times
`recorder.record`, `budgets.verdict`, `reports.user_usage(30d)` and `reports.report(30d)`
(one pipelined round trip of server-side merges, however many days or people), and prints
the memory the aggregates take.

    .venv/bin/python -m bench.ledger [--users 500] [--channels 50] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bot.config import Settings
from bot.contracts.stream import Usage
from bot.deepseek.pricing import PriceTable
from bot.usage.ledger import Ledger
from bot.usage.recorder import UsageRecord
from tests.conftest import RedisProcess

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def make_record(rng: random.Random, prices: PriceTable, users: int, channels: int) -> UsageRecord:
    tier = rng.choice(("pro", "flash"))
    prompt = rng.randint(2_000, 60_000)
    hit = prompt * rng.randint(0, 95) // 100
    completion = rng.randint(100, 4_000)
    usage = Usage(prompt, completion, hit, prompt - hit, completion // 3)
    return UsageRecord(
        team="T1",
        user=f"U{rng.randrange(users):05d}",
        channel=f"C{rng.randrange(channels):04d}",
        thread_ts=f"1700000000.{rng.randrange(5000):06d}",
        tier=tier,  # type: ignore[arg-type]
        model=f"deepseek-v4-{tier}",
        thinking=rng.random() < 0.7,
        usage=usage,
        cost_micros=prices.cost_micros(tier, usage),  # type: ignore[arg-type]
        at=NOW - timedelta(days=rng.randrange(30), minutes=rng.randrange(600)),
    )


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    """(median, p99) in milliseconds over `n` sequential runs."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(n - 1, int(n * 0.99))]


async def main(users: int, channels: int, calls: int) -> None:
    server = RedisProcess()
    server.start()
    redis: Redis = Redis.from_url(server.url, decode_responses=True)
    try:
        settings = Settings(_env_file=None, deepseek_gateway="deepseek", log_level="ERROR")  # type: ignore[call-arg]
        prices = PriceTable.from_settings(settings)
        ledger = Ledger(redis, settings, prices, now=lambda: NOW)
        rng = random.Random(7)
        records = [make_record(rng, prices, users, channels) for _ in range(calls)]
        start = time.perf_counter()
        sem = asyncio.Semaphore(50)

        async def one(rec: UsageRecord) -> None:
            async with sem:
                await ledger.recorder.record(rec)

        await asyncio.gather(*(one(r) for r in records))
        fill_s = time.perf_counter() - start
        memory = (await redis.info("memory"))["used_memory"]
        await ledger.budgets.set_cap("T1", "user", 5_000_000, by="UADMIN")
        await ledger.budgets.set_cap("T1", "workspace", 10**12, by="UADMIN")

        rec = records[0]
        print(
            f"filled {calls} calls ({users} users, {channels} channels, 30 days) in {fill_s:.2f} s"
        )
        print(f"  = {calls / fill_s:,.0f} records/s at concurrency 50")
        print(f"redis used_memory after fill: {memory / 1e6:.1f} MB")
        for name, fn, n in [
            ("record (one MULTI)", lambda: ledger.recorder.record(rec), 500),
            ("budget verdict", lambda: ledger.budgets.verdict("T1", "U00001"), 500),
            ("user_usage 30d", lambda: ledger.reports.user_usage("T1", "U00001", "30d"), 200),
            ("report today", lambda: ledger.reports.report("T1", "today"), 50),
            ("report 30d", lambda: ledger.reports.report("T1", "30d"), 20),
        ]:
            median, p99 = await timed(fn, n)
            print(f"{name:<20} median {median:7.2f} ms   p99 {p99:7.2f} ms   (n={n})")
        report = await ledger.reports.report("T1", "30d")
        print(
            f"report 30d: {report.total.requests:,} requests, {len(report.by_user)} users, "
            f"{len(report.by_channel)} channels, cost ${report.total.cost / 1e6:,.2f}"
        )
    finally:
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.channels, args.calls))
