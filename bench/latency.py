"""Added latency of the Slack surfaces: how long the bot takes, beyond the upstream's own time
to first token, to put the first words of an answer in front of the person.

The bot runs as a real process (`python -m bot`, HTTP mode, `tests/replica.py`) with its own
`redis-server`; this process runs the fake Slack and the fake DeepSeek (fixed time to first
token, then the answer in pieces) and sends signed `app_mention` events. Each thread is a
top-level mention followed by `--turns - 1` mentions in its thread, each sent once the answer
before it has finished; all threads run at once. Threads start at random moments within
`--spread` seconds and wait a random 0..`--spread` s before each next question, so arrivals
interleave as in a workspace; `--spread 0` sends every thread's question at the same instant
(a synchronized burst, the worst case for a single process).

Per answer:
- added latency = (first answer text arriving at fake Slack - event sent)
                  - (first text written by fake DeepSeek - its request received);
- Slack calls (from fake Slack's log, by method);
- Redis commands (INFO commandstats delta) and round trips (INFO stats `total_reads_processed`
  delta: one read event per request or pipeline the server handles, minus this script's own).

    .venv/bin/python -m bench.latency [--threads 1 50] [--turns 3] [--ttft 0.3] [--stream 1.5]
                                      [--spread 2.0] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from tests.conftest import RedisProcess
from tests.fakes.deepseek import FakeDeepSeek, Reply, text_reply
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.replica import Replica, start_replica

FIRST = "Sharding"  # the answer's first word: where it shows up is "first visible text"
ANSWER = (
    f"{FIRST} keeps a thread's keys on one shard: put a hash tag such as {{team:channel:ts}} in "
    "every key of the thread, so MULTI and Lua stay legal on Redis Cluster. "
) * 8
PIECES = 30
_ids = itertools.count(1)


@dataclass
class Thread:
    id: int
    channel: str
    root: str = ""
    sent: list[float] = field(default_factory=list)  # per turn: event sent (monotonic)
    first_text: list[float] = field(default_factory=list)  # per answer: first words at Slack
    starts: int = 0  # answers begun in Slack (startStream / postMessage calls)
    finished: int = 0  # answers ended in Slack
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Watcher:
    """Reads fake Slack's call log as it grows and attributes each call to its thread."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.threads: dict[tuple[str, str], Thread] = {}
        self.seen = len(slack.calls)

    def scan(self) -> None:
        calls = self.slack.calls
        while self.seen < len(calls):
            call = calls[self.seen]
            self.seen += 1
            args = call.args
            root = args.get("thread_ts")
            if root is None and args.get("ts") in self.slack.messages:
                root = self.slack.messages[str(args["ts"])].thread_ts
            thread = self.threads.get((str(args.get("channel")), str(root)))
            if thread is None or not call.method.startswith("chat."):
                continue
            if call.method in ("chat.startStream", "chat.postMessage"):
                thread.starts += 1
            if len(thread.first_text) < thread.starts and FIRST in json.dumps(args):
                thread.first_text.append(call.at)
            blocks = args.get("blocks") or []
            if call.method == "chat.stopStream" or any(
                isinstance(b, dict) and b.get("block_id") == "feedback" for b in blocks
            ):
                thread.finished += 1
                thread.changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.scan()
            await asyncio.sleep(0.002)


@dataclass
class Level:
    threads: int
    answers: int
    added_ms: list[float]
    before_ms: list[float]  # event sent -> request at the upstream
    after_ms: list[float]  # the upstream's first text written -> first text at Slack
    slack_calls: Counter[str]
    redis_cmds: Counter[str]
    redis_round_trips: int
    wall_s: float
    bot_cpu_s: float

    def summary(self) -> dict[str, Any]:
        added = sorted(self.added_ms)
        n = max(1, self.answers)
        return {
            "threads": self.threads,
            "answers": self.answers,
            "added_p50_ms": round(_pct(added, 0.50), 1),
            "added_p99_ms": round(_pct(added, 0.99), 1),
            "added_max_ms": round(added[-1], 1) if added else None,
            "before_upstream_p50_p99_ms": _p50_p99(self.before_ms),
            "after_upstream_p50_p99_ms": _p50_p99(self.after_ms),
            "slack_calls_per_answer": round(sum(self.slack_calls.values()) / n, 2),
            "slack_calls_by_method": {k: round(v / n, 2) for k, v in self.slack_calls.items()},
            "redis_cmds_per_turn": round(sum(self.redis_cmds.values()) / n, 1),
            "redis_cmds_by_name": {
                k: round(v / n, 1) for k, v in self.redis_cmds.most_common() if v >= n / 2
            },
            "redis_round_trips_per_turn": round(self.redis_round_trips / n, 1),
            "bot_cpu_ms_per_turn": round(self.bot_cpu_s * 1000 / n, 1),
            "wall_s": round(self.wall_s, 2),
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p50_p99(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [round(_pct(ordered, 0.5), 1), round(_pct(ordered, 0.99), 1)]


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def answer_reply(ttft: float, stream_s: float) -> Reply:
    return text_reply(ANSWER, pieces=PIECES, first_token_delay=ttft, chunk_delay=stream_s / PIECES)


def mention(channel: str, text: str, ts: str, thread_ts: str | None) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "client_msg_id": f"bench-{next(_ids)}",
        "team": "T1",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


async def redis_counts(redis: Redis) -> tuple[Counter[str], int]:
    """(commands processed by name, client read events) so far."""
    stats = await redis.info("commandstats")
    cmds = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    reads = int((await redis.info("stats"))["total_reads_processed"])
    return cmds, reads


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slack = FakeSlack()
        self.deepseek = FakeDeepSeek()
        # Every request gets the bench's answer (the fake's default is a short text).
        self.deepseek.default = lambda *_, **__: answer_reply(args.ttft, args.stream)
        self.redis_proc = RedisProcess()
        self.bot: Replica | None = None
        self.random = random.Random(args.seed)

    async def __aenter__(self) -> Bench:
        await self.slack.start()
        await self.deepseek.start()
        self.slack.add_user("U1", "Alice")
        self.redis_proc.start()
        self.redis = Redis.from_url(self.redis_proc.url, decode_responses=True)
        self.bot = await start_replica(self.slack.url, self.deepseek.url, self.redis_proc.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.bot is not None:
            await self.bot.terminate()
        await self.redis.aclose()
        self.redis_proc.stop()
        shutil.rmtree(self.redis_proc.dir, ignore_errors=True)
        await self.deepseek.stop()
        await self.slack.stop()

    async def _thread(self, thread: Thread, watcher: Watcher, turns: int) -> None:
        assert self.bot is not None
        for n in range(turns):
            await asyncio.sleep(self.random.uniform(0, self.args.spread))
            text = f"<@{BOT_USER}> question {thread.id}.{n}: how do we shard the thread keys?"
            msg = self.slack.add_message(thread.channel, text, thread_ts=thread.root or None)
            if not thread.root:
                thread.root = msg.ts
                watcher.threads[(thread.channel, thread.root)] = thread
            event = mention(thread.channel, text, msg.ts, thread.root if n else None)
            thread.sent.append(time.monotonic())
            resp = await self.bot.slack.event(event)
            assert resp.status_code == 200, resp.status_code
            while thread.finished <= n:
                thread.changed.clear()
                await thread.changed.wait()

    async def level(self, threads: int, turns: int) -> Level:
        since_calls = len(self.slack.calls)
        since_requests = len(self.deepseek.requests)
        before = await redis_counts(self.redis)
        assert self.bot is not None
        cpu_before = cpu_seconds(self.bot.proc.pid)
        watcher, stop = Watcher(self.slack), asyncio.Event()
        watching = asyncio.create_task(watcher.run(stop))
        started = time.monotonic()
        group = [Thread(n, f"C{n % 10:03d}") for n in range(threads)]
        await asyncio.gather(*(self._thread(t, watcher, turns) for t in group))
        wall = time.monotonic() - started
        stop.set()
        await watching
        await asyncio.sleep(0.2)  # the last answers' bookkeeping (usage, lock release) ends
        after = await redis_counts(self.redis)
        cpu = cpu_seconds(self.bot.proc.pid) - cpu_before

        # The upstream's own time to first text, per request ("question {thread}.{turn}").
        upstream: dict[tuple[int, int], tuple[float, float]] = {}
        requests = self.deepseek.requests[since_requests:]
        timings = self.deepseek.timings[since_requests:]
        for body, timing in zip(requests, timings, strict=True):
            tag = body["messages"][-1]["content"].rsplit("question ", 1)[1].split(":", 1)[0]
            thread_id, turn = tag.split(".")
            upstream[(int(thread_id), int(turn))] = (timing[0], timing[1])
        added, before_ms, after_ms = [], [], []
        for t in group:
            for n, (sent, first) in enumerate(zip(t.sent, t.first_text, strict=True)):
                received, first_written = upstream[(t.id, n)]
                before_ms.append((received - sent) * 1000)
                after_ms.append((first - first_written) * 1000)
                added.append(before_ms[-1] + after_ms[-1])
        calls = Counter(c.method for c in self.slack.calls[since_calls:])
        # This script's own INFO calls (two before, two after) are not the bot's.
        cmds = after[0] - before[0]
        cmds["info"] -= 4
        cmds = +cmds
        reads = after[1] - before[1] - 4
        return Level(threads, len(added), added, before_ms, after_ms, calls, cmds, reads, wall, cpu)


async def main(args: argparse.Namespace) -> None:
    async with Bench(args) as bench:
        # Warm-up, not reported: imports, auth.test, caches, and connection pools grown to the
        # largest level (a running bot has them; a cold start is not what is measured).
        await bench.level(max(args.threads), 1)
        print(
            json.dumps(
                {
                    "ttft_s": args.ttft,
                    "stream_s": args.stream,
                    "turns_per_thread": args.turns,
                    "spread_s": args.spread,
                }
            )
        )
        for threads in args.threads:
            result = await bench.level(threads, args.turns)
            print(json.dumps(result.summary()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--ttft", type=float, default=0.3, help="upstream time to first token")
    parser.add_argument("--stream", type=float, default=1.5, help="seconds the answer streams")
    parser.add_argument(
        "--spread", type=float, default=2.0, help="arrivals spread over this many seconds"
    )
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
