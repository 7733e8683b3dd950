"""SSE parsing speed: our client (`bot.deepseek.sse`, `bot.deepseek.client`) against the
official `openai` SDK on the same stream of 100,000 chat-completion chunks.

The stream is shaped like DeepSeek's (a role chunk, 30% reasoning chunks, then answer
chunks with some non-ASCII and escapes, a finish chunk with usage, `[DONE]`). It is parsed

- from memory, fed in one read per event (how tokens arrive live) and in 64 KiB reads;
- from a local server (a separate process on 127.0.0.1 writing the body in 64 KiB pieces),
  through the whole client: HTTP request, streaming read, parsing, typed events.

Each figure is the median of `--runs` runs, in µs per chunk. The SDK side needs the SDK,
which is not a dependency of the bot:

    .venv/bin/pip install openai
    .venv/bin/python -m bench.sse_parse [--chunks 100000] [--runs 5] [--sdk-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from bot.config import Settings
from bot.contracts.stream import ReasoningDelta, TextDelta
from bot.deepseek.client import DeepSeekClient
from bot.deepseek.sse import StreamParser

_VOCABULARY = (
    "the of and to in is that it for on with as was by this be are from at or an have not "
    "which but were all we can has there been if more when will would who so no Redis "
    'stream cache prefix token thread Slack answer café naïve über 東京 数据 😀 \\ "quoted"'
)
WORDS = _VOCABULARY.split()
READ = 64 * 1024


def build_stream(chunks: int, seed: int = 3) -> tuple[bytes, int, int]:
    """(body, reasoning characters, answer characters) of a DeepSeek-shaped stream with
    `chunks` data chunks in all."""
    rng = random.Random(seed)
    envelope = {
        "id": "2f5c1d0e-7a7b-4f7e-9d55-0c6a1b2c3d4e",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "deepseek-v4-flash",
        "system_fingerprint": "fp_8802369eaa_prod0425fp8",
    }

    def line(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = {**envelope, "choices": [choice], **extra}
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    parts = [line({"role": "assistant", "content": None, "reasoning_content": ""})]
    reasoning = answer = 0
    body_chunks = chunks - 2
    for i in range(body_chunks):
        token = rng.choice(WORDS)
        token = (" " + token) if rng.random() < 0.8 else (token + ("\n\n" if i % 40 == 0 else ""))
        if i < body_chunks * 3 // 10:
            parts.append(line({"content": None, "reasoning_content": token}))
            reasoning += len(token)
        else:
            parts.append(line({"content": token, "reasoning_content": None}))
            answer += len(token)
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": body_chunks,
        "total_tokens": 1200 + body_chunks,
        "prompt_cache_hit_tokens": 1152,
        "prompt_cache_miss_tokens": 48,
        "completion_tokens_details": {"reasoning_tokens": body_chunks * 3 // 10},
    }
    parts.append(line({"content": "", "reasoning_content": None}, "stop", usage=usage))
    parts.append(b"data: [DONE]")
    return b"\n\n".join(parts) + b"\n\n", reasoning, answer


def per_event(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n")[:-1]]


def in_reads(body: bytes, size: int = READ) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def median_us(fn: Callable[[], float], runs: int, chunks: int) -> float:
    samples = []
    for _ in range(runs):
        gc.collect()  # each run starts from the same heap, whatever ran before it
        samples.append(fn())
    return statistics.median(samples) / chunks * 1e6


# --- from memory ----------------------------------------------------------------------------


def ours_memory(pieces: list[bytes], expect: tuple[int, int]) -> float:
    start = time.perf_counter()
    parser = StreamParser()
    reasoning = answer = 0
    for piece in pieces:
        for event in parser.feed(piece):
            if type(event) is TextDelta:
                answer += len(event.text)
            elif type(event) is ReasoningDelta:
                reasoning += len(event.text)
    parser.close()
    parser.finish()
    elapsed = time.perf_counter() - start
    assert (reasoning, answer) == expect, ((reasoning, answer), expect)
    return elapsed


def sdk_memory(pieces: list[bytes], expect: tuple[int, int]) -> float:
    import httpx2
    from openai import OpenAI, Stream
    from openai.types.chat import ChatCompletionChunk

    client = OpenAI(api_key="sk-bench", base_url="http://127.0.0.1:9/v1", max_retries=0)
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    start = time.perf_counter()
    response = httpx2.Response(200, content=iter(pieces), request=request)
    reasoning = answer = 0
    for chunk in Stream(cast_to=ChatCompletionChunk, response=response, client=client):
        if chunk.choices:
            delta = chunk.choices[0].delta
            answer += len(delta.content or "")
            reasoning += len(getattr(delta, "reasoning_content", None) or "")
    elapsed = time.perf_counter() - start
    client.close()
    assert (reasoning, answer) == expect, ((reasoning, answer), expect)
    return elapsed


def sdk_sse_only(pieces: list[bytes], expect: tuple[int, int]) -> float:
    """The SDK's SSE decoder plus json.loads, without building its pydantic chunk objects:
    a lower bound of what the SDK's own parsing costs."""
    from openai._streaming import SSEDecoder

    start = time.perf_counter()
    reasoning = answer = 0
    for sse in SSEDecoder().iter_bytes(iter(pieces)):
        if sse.data.startswith("[DONE]"):
            break
        data = sse.json()
        if data["choices"]:
            delta = data["choices"][0]["delta"]
            answer += len(delta.get("content") or "")
            reasoning += len(delta.get("reasoning_content") or "")
    elapsed = time.perf_counter() - start
    assert (reasoning, answer) == expect, ((reasoning, answer), expect)
    return elapsed


# --- from a local server ----------------------------------------------------------------------


def serve(chunks: int) -> None:
    """Child process: answer every POST with the stream, written in 64 KiB pieces."""
    body, _, _ = build_stream(chunks)
    pieces = in_reads(body)

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def ours_server(url: str, expect: tuple[int, int]) -> float:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, deepseek_api_key="sk-bench", deepseek_base_url=url, deepseek_max_retries=0
    )
    client = DeepSeekClient(settings)
    try:
        start = time.perf_counter()
        reasoning = answer = 0
        async for event in client.stream(
            model="deepseek-v4-flash",
            messages=[{"role": "user", "content": "Hi"}],
            tools=None,
            thinking=True,
            effort="high",
        ):
            if type(event) is TextDelta:
                answer += len(event.text)
            elif type(event) is ReasoningDelta:
                reasoning += len(event.text)
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    assert (reasoning, answer) == expect, ((reasoning, answer), expect)
    return elapsed


async def sdk_server(url: str, expect: tuple[int, int]) -> float:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(api_key="sk-bench", base_url=url, max_retries=0) as client:
        start = time.perf_counter()
        reasoning = answer = 0
        stream = await client.chat.completions.create(
            model="deepseek-v4-flash",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                answer += len(delta.content or "")
                reasoning += len(getattr(delta, "reasoning_content", None) or "")
        elapsed = time.perf_counter() - start
    assert (reasoning, answer) == expect, ((reasoning, answer), expect)
    return elapsed


def server_runs(fn: Any, url: str, expect: tuple[int, int], runs: int, chunks: int) -> float:
    return median_us(lambda: asyncio.run(fn(url, expect)), runs, chunks)


# --- main ---------------------------------------------------------------------------------------


def have_sdk() -> bool:
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sdk-runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.chunks)
        return

    # The client's one info line per request would flood the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = args.chunks
    body, reasoning, answer = build_stream(n)
    expect = (reasoning, answer)
    sdk = have_sdk()
    print(f"{n:,} chunks, {len(body) / 1e6:.1f} MB, Python {sys.version.split()[0]}")
    if not sdk:
        print("openai SDK not installed: `.venv/bin/pip install openai` for the comparison")
    rows: list[tuple[str, float, float | None, float | None]] = []
    for name, pieces in (
        ("memory, one read per event", per_event(body)),
        ("memory, 64 KiB reads", in_reads(body)),
    ):
        ours = median_us(lambda p=pieces: ours_memory(p, expect), args.runs, n)  # type: ignore[misc]
        full = median_us(lambda p=pieces: sdk_memory(p, expect), args.sdk_runs, n) if sdk else None  # type: ignore[misc]
        bare = (
            median_us(lambda p=pieces: sdk_sse_only(p, expect), args.sdk_runs, n) if sdk else None
        )  # type: ignore[misc]
        rows.append((name, ours, full, bare))

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.sse_parse", "--serve", "--chunks", str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = f"http://127.0.0.1:{int(child.stdout.readline())}/v1"
        ours = server_runs(ours_server, url, expect, args.runs, n)
        full = server_runs(sdk_server, url, expect, args.sdk_runs, n) if sdk else None
        rows.append(("local server, whole client", ours, full, None))
    finally:
        child.kill()
        child.wait()

    print()
    head = ["", "ours", "openai SDK", "ratio", "SDK SSE+json only", "ratio"]
    print(
        " ".join(
            f"{h:{w}}" for h, w in zip(head, ["30", ">8", ">11", ">7", ">18", ">7"], strict=True)
        )
    )
    for name, ours, full, bare in rows:
        cells = [f"{name:30}", f"{ours:8.2f}"]
        cells += [f"{full:11.1f}", f"{full / ours:6.0f}x"] if full else [f"{'-':>11}", f"{'-':>7}"]
        cells += [f"{bare:18.1f}", f"{bare / ours:6.1f}x"] if bare else [f"{'-':>18}", f"{'-':>7}"]
        print(" ".join(cells))
    print(f"\nµs per chunk, median of runs (ours: {args.runs}, SDK: {args.sdk_runs})")


if __name__ == "__main__":
    main()
