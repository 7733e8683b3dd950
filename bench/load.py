"""Load: the bot's added latency, CPU per streamed token, peak RSS, Slack calls per answer and
Redis commands (and round trips) per turn, at several numbers of concurrent threads.

The bot runs as a real process (`python -m bot`, HTTP mode, as `tests/replica.py` starts it)
against a dedicated `redis-server` and the fake Slack and DeepSeek servers (this process),
all on 127.0.0.1. Each thread is a mention followed by mentions in its thread, one turn after
the other; all threads run at once.

- Added latency = (first answer text reaching fake Slack - event sent) - (the fake DeepSeek's
  first text written - its request received): what the bot adds before and after the
  upstream's time to first token (Slack ack, dedupe, lock, history, prefs, streaming).
- CPU per streamed token = bot process CPU time (user + system, /proc) / output tokens.
- Peak RSS = the bot process's VmHWM after each level (levels run smallest first).
- Redis commands per turn = INFO commandstats deltas; round trips per turn are counted at one
  thread through a byte-counting TCP proxy in front of Redis (a second bot process).

    .venv/bin/python -m bench.load [--threads 1 50 200] [--turns 3] [--ttft 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.conftest import RedisProcess, free_port
from tests.fakes.deepseek import FakeDeepSeek, Reply, text_reply
from tests.fakes.slack import FakeSlack
from tests.replica import Replica, start_replica
from tests.slack_sender import event_envelope, sign

FIRST = "Sharding"
# Any call carrying the answer's first characters shows "first visible text" (a chunk may
# be one token, so the first call may hold only part of the first word).
FIRST_SEEN = FIRST[:3]
ANSWER = (
    FIRST + " keeps one thread's keys on one shard: use a hash tag such as {team:channel:ts} in "
    "every key of the thread, so MULTI and Lua stay legal on Redis Cluster. "
) * 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHANNELS = [f"C{n:03d}" for n in range(10)]


def answer_reply(args: argparse.Namespace) -> Reply:
    """DeepSeek's way: a few tokens per SSE chunk (`--chunk-tokens`, ~4 chars a token) at
    `--rate` tokens a second, after `--ttft`."""
    pieces = max(1, len(ANSWER) // (4 * args.chunk_tokens))
    delay = args.chunk_tokens / args.rate
    return text_reply(ANSWER, pieces=pieces, first_token_delay=args.ttft, chunk_delay=delay)


def tokens_per_answer() -> int:
    return max(1, len(ANSWER) // 4)  # how the fake counts completion tokens


# --- process figures ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def commandstats(redis: Redis) -> Counter[str]:
    info = await redis.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})


# --- watching fake Slack -------------------------------------------------------------------


@dataclass
class ThreadState:
    channel: str
    root: str
    sent: list[float] = field(default_factory=list)  # per turn: event sent
    first_text: list[float] = field(default_factory=list)  # per turn: first answer text
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Watcher:
    """Reads fake Slack's call log incrementally and attributes calls to threads."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.threads: dict[tuple[str, str], ThreadState] = {}
        self.seen = 0

    def thread_of(self, args: dict[str, Any]) -> tuple[str, str] | None:
        channel = str(args.get("channel", ""))
        root = args.get("thread_ts")
        if not root and args.get("ts") in self.slack.messages:
            root = self.slack.messages[str(args["ts"])].thread_ts
        return (channel, str(root)) if root else None

    def scan(self) -> None:
        calls = self.slack.calls
        while self.seen < len(calls):
            call = calls[self.seen]
            self.seen += 1
            if not call.method.startswith("chat."):
                continue
            key = self.thread_of(call.args)
            state = self.threads.get(key) if key else None
            if state is None or not state.sent:
                continue
            turn = len(state.sent)
            if len(state.first_text) < turn and FIRST_SEEN in json.dumps(call.args):
                state.first_text.append(call.at)
            if call.method == "chat.stopStream" or _ends_answer(call.args):
                state.finished.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.scan()
            await asyncio.sleep(0.005)


class LoopLag:
    """How late this (the load generator's) event loop runs a 5 ms timer: the figures are
    only the bot's if this stays small, since every timestamp is taken on this loop."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            start = time.monotonic()
            await asyncio.sleep(0.005)
            self.samples.append((time.monotonic() - start - 0.005) * 1000)


def _ends_answer(args: dict[str, Any]) -> bool:
    """A posted or updated message carrying the closing blocks (feedback or Retry)."""
    blocks = args.get("blocks")
    return isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") in ("actions", "context_actions") for b in blocks
    )


# --- one level ---------------------------------------------------------------------------------


@dataclass
class LevelResult:
    threads: int
    turns: int
    added_ms: list[float]
    before_ms: list[float]  # event sent -> request at the upstream
    after_ms: list[float]  # upstream's first text written -> first text at Slack
    answered: int
    wall_s: float
    cpu_s: float
    rss_mb: float
    slack_calls: Counter[str]
    redis_cmds: Counter[str]
    loadgen_cpu_s: float
    loadgen_lag_ms: list[float]
    added_by_turn_ms: dict[int, list[float]]  # by the turn's place in its thread (0: first)

    def summary(self) -> dict[str, Any]:
        tokens = self.answered * tokens_per_answer()
        added = sorted(self.added_ms)
        slack_total = sum(self.slack_calls.values())
        redis_total = sum(self.redis_cmds.values())
        return {
            "threads": self.threads,
            "turns": self.threads * self.turns,
            "answered": self.answered,
            "added_p50_ms": round(statistics.median(added), 1) if added else None,
            "added_p99_ms": round(pct(added, 0.99), 1) if added else None,
            "added_max_ms": round(added[-1], 1) if added else None,
            "added_by_turn_p50_p99_ms": {
                k: p50_p99(v) for k, v in sorted(self.added_by_turn_ms.items())
            },
            "before_upstream_p50_p99_ms": p50_p99(self.before_ms),
            "after_upstream_p50_p99_ms": p50_p99(self.after_ms),
            "cpu_us_per_token": round(self.cpu_s / tokens * 1e6, 1) if tokens else None,
            "peak_rss_mb": round(self.rss_mb, 1),
            "slack_calls_per_answer": round(slack_total / max(1, self.answered), 2),
            "slack_calls_per_1k_tokens": round(slack_total / max(1, tokens) * 1000, 2),
            "slack_calls_by_method": dict(self.slack_calls.most_common()),
            "redis_cmds_per_turn": round(redis_total / max(1, self.answered), 1),
            "redis_cmds_by_name": {
                k: round(v / max(1, self.answered), 2) for k, v in self.redis_cmds.most_common()
            },
            "wall_s": round(self.wall_s, 2),
            "bot_cpu_s": round(self.cpu_s, 2),
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 2),
            "loadgen_lag_p50_p99_ms": p50_p99(self.loadgen_lag_ms),
        }


def p50_p99(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [round(pct(ordered, 0.5), 1), round(pct(ordered, 0.99), 1)] if ordered else []


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slack = FakeSlack()
        self.deepseek = FakeDeepSeek()
        self.redis_server = RedisProcess()
        self.watcher = Watcher(self.slack)
        self.lag = LoopLag()
        # aiohttp, not httpx: httpx's pool costs milliseconds per request at 200 connections
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(limit=2000)
        )
        self.n_events = 0

    async def start(self) -> None:
        self.redis_server.start()
        await self.slack.start()
        await self.deepseek.start()
        self.slack.add_user("U1", "Alice")
        reply = answer_reply(self.args)  # one Reply for all: its SSE lines are encoded once
        self.deepseek.default = lambda: reply  # type: ignore[assignment,misc]
        self.redis = Redis.from_url(self.redis_server.url, decode_responses=True)

    async def stop(self) -> None:
        await self.http.close()
        await self.redis.aclose()
        await self.slack.stop()
        await self.deepseek.stop()
        self.redis_server.stop()
        shutil.rmtree(self.redis_server.dir, ignore_errors=True)

    async def send(self, replica: Replica, event: dict[str, Any]) -> None:
        self.n_events += 1
        payload = event_envelope(event, event_id=f"EvLoad{self.n_events:08d}")
        body = json.dumps(payload).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(replica.slack.secret, ts, body),
        }
        async with self.http.post(replica.slack.url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"event not acked: {resp.status}")

    async def thread(self, replica: Replica, i: int, turns: int, level: int) -> ThreadState:
        rng = random.Random(i)
        await asyncio.sleep(rng.uniform(0, self.args.ramp))
        channel = CHANNELS[i % len(CHANNELS)]
        root = self.slack.add_message(channel, f"<@UBOT> level {level} thread {i} turn 0")
        state = ThreadState(channel, root.ts)
        self.watcher.threads[(channel, root.ts)] = state
        for k in range(turns):
            if k:
                await asyncio.sleep(rng.uniform(0, 2 * self.args.think))  # reading the answer
            if k == 0:
                msg = root
                event = {"type": "app_mention", "channel": channel, "user": "U1", "ts": msg.ts}
            else:
                text = f"<@UBOT> level {level} thread {i} turn {k}"
                msg = self.slack.add_message(channel, text, thread_ts=root.ts)
                event = {
                    "type": "app_mention",
                    "channel": channel,
                    "user": "U1",
                    "ts": msg.ts,
                    "thread_ts": root.ts,
                }
            event |= {"text": msg.text, "team": "T1", "event_ts": msg.ts}
            state.finished.clear()
            state.sent.append(time.monotonic())
            await self.send(replica, event)
            try:
                await asyncio.wait_for(state.finished.wait(), self.args.timeout)
            except TimeoutError:
                print(f"  thread {i} turn {k}: no finished answer in {self.args.timeout}s")
                break
        return state

    async def level(self, replica: Replica, n: int, turns: int) -> LevelResult:
        pid = replica.proc.pid
        calls0, reqs0 = len(self.slack.calls), len(self.deepseek.requests)
        cmds0 = await commandstats(self.redis)
        cpu0 = cpu_seconds(pid)
        gen0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        lag0 = len(self.lag.samples)
        states = await asyncio.gather(*(self.thread(replica, i, turns, n) for i in range(n)))
        wall = time.monotonic() - t0
        await asyncio.sleep(0.3)  # calls after the last stopStream (footer, status clear)
        self.watcher.scan()
        cpu = cpu_seconds(pid) - cpu0
        gen1 = resource.getrusage(resource.RUSAGE_SELF)
        cmds = await commandstats(self.redis) - cmds0
        cmds.pop("info", None)
        calls = Counter(c.method for c in self.slack.calls[calls0:])
        upstream = self.upstream(reqs0)
        added: list[float] = []
        before: list[float] = []
        after: list[float] = []
        by_turn: dict[int, list[float]] = {}
        answered = 0
        for i, s in enumerate(states):
            for k, (sent, first) in enumerate(zip(s.sent, s.first_text, strict=False)):
                up = upstream.get(f"level {n} thread {i} turn {k}")
                if up is not None:
                    received, first_token = up
                    added.append((first - sent - (first_token - received)) * 1000)
                    by_turn.setdefault(k, []).append(added[-1])
                    before.append((received - sent) * 1000)
                    after.append((first - first_token) * 1000)
            answered += len(s.first_text)
        return LevelResult(
            n,
            turns,
            added,
            before,
            after,
            answered,
            wall,
            cpu,
            peak_rss_mb(pid),
            calls,
            cmds,
            (gen1.ru_utime + gen1.ru_stime) - (gen0.ru_utime + gen0.ru_stime),
            self.lag.samples[lag0:],
            by_turn,
        )

    def upstream(self, start: int) -> dict[str, tuple[float, float]]:
        """Question marker -> (request received, first text written) at the fake DeepSeek
        (the last attempt's)."""
        out: dict[str, tuple[float, float]] = {}
        for body, timing in zip(
            self.deepseek.requests[start:], self.deepseek.timings[start:], strict=False
        ):
            if len(timing) < 2:
                continue
            last = str(body["messages"][-1].get("content") or "")
            marker = last[last.find("level ") :].strip()
            out[marker] = (timing[0], timing[1])
        return out

    async def round_trips(self, turns: int) -> dict[str, float]:
        """A second bot whose Redis traffic goes through a counting proxy: one thread."""
        proxy = CountingProxy("127.0.0.1", self.redis_server.port)
        port = await proxy.start()
        replica = await start_replica(
            self.slack.url,
            self.deepseek.url,
            f"redis://127.0.0.1:{port}/0",
            LOG_LEVEL="WARNING",
        )
        try:
            await self.thread(replica, 0, 1, -1)  # warm-up: connections, caches
            before = proxy.requests
            state = await self.thread(replica, 1, turns, -2)
            await asyncio.sleep(0.3)
            done = len(state.first_text)
            return {
                "turns": done,
                "round_trips_per_turn": round((proxy.requests - before) / max(1, done), 1),
            }
        finally:
            await replica.terminate()
            await proxy.stop()


class CountingProxy:
    """TCP proxy that counts client->server reads (one per command or pipeline)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        port = free_port()
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port)
        return port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.requests += 1
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--turns", type=int, default=3, help="turns per thread")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake upstream TTFT, s")
    parser.add_argument("--rate", type=float, default=50.0, help="fake output tokens/s")
    parser.add_argument("--chunk-tokens", type=int, default=1, help="tokens per SSE chunk")
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="threads start spread over this many s (0: all at once; default: one answer's time)",
    )
    parser.add_argument("--think", type=float, default=2.0, help="mean pause between turns, s")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--no-round-trips", action="store_true", help="skip the round-trip pass (a second bot)"
    )
    args = parser.parse_args()
    if args.ramp is None:
        args.ramp = args.ttft + tokens_per_answer() / args.rate
    return args


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    await bench.start()
    stop = asyncio.Event()
    watcher = asyncio.create_task(bench.watcher.run(stop))
    lag = asyncio.create_task(bench.lag.run(stop))
    results: dict[str, Any] = {
        "setup": {
            "cpus": os.cpu_count(),
            "ttft_s": args.ttft,
            "rate_tokens_s": args.rate,
            "chunk_tokens": args.chunk_tokens,
            "tokens_per_answer": tokens_per_answer(),
            "turns_per_thread": args.turns,
            "ramp_s": args.ramp,
            "think_s": args.think,
        },
        "levels": [],
    }
    replica = await start_replica(
        bench.slack.url, bench.deepseek.url, bench.redis_server.url, LOG_LEVEL="WARNING"
    )
    try:
        print(f"bot pid {replica.proc.pid}; idle RSS {peak_rss_mb(replica.proc.pid):.1f} MB")
        await bench.level(replica, 1, 1)  # warm-up
        for n in sorted(args.threads):
            summary = (await bench.level(replica, n, args.turns)).summary()
            results["levels"].append(summary)
            print(json.dumps(summary))
    finally:
        await replica.terminate()
    if not args.no_round_trips:
        results["redis_round_trips"] = await bench.round_trips(args.turns)
        print(json.dumps(results["redis_round_trips"]))
    stop.set()
    await watcher
    await lag
    await bench.stop()
    print_table(results)
    return results


def print_table(results: dict[str, Any]) -> None:
    print()
    print(
        "| threads | turns | added p50 | added p99 | CPU/token | peak RSS | Slack calls/answer "
        "| Slack calls/1k tokens | Redis cmds/turn |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["levels"]:
        print(
            f"| {r['threads']} | {r['turns']} | {r['added_p50_ms']} ms | {r['added_p99_ms']} ms "
            f"| {r['cpu_us_per_token']} µs | {r['peak_rss_mb']} MB "
            f"| {r['slack_calls_per_answer']} | {r['slack_calls_per_1k_tokens']} "
            f"| {r['redis_cmds_per_turn']} |"
        )
    rt = results.get("redis_round_trips")
    if rt:
        print(f"\nRedis round trips per turn (1 thread, {rt['turns']} turns): ", end="")
        print(rt["round_trips_per_turn"])


if __name__ == "__main__":
    arguments = parse_args()
    try:  # uvloop (not a project dependency) when installed: a cheaper load generator
        import uvloop
    except ImportError:
        figures = asyncio.run(main(arguments))
    else:
        figures = uvloop.run(main(arguments))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2))
