"""A fake DeepSeek / OpenAI-compatible gateway on 127.0.0.1 speaking real SSE.

Tests script replies (`push`) built with `text_reply`, `tool_reply` and `error_reply`; with no
script it answers a short default text. It records every request body, can stall the first
token, hold a stream after N chunks until the test releases it, hang on keep-alives, cut the
connection mid-stream, and simulate DeepSeek's prefix cache (hit = longest common prefix with
any earlier request, in 64-token units, ~4 chars a token).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from aiohttp import web

Chunk = dict[str, Any] | str  # a dict is sent as `data: {json}`, a str as a raw SSE line


@dataclass
class Reply:
    chunks: list[Chunk] = field(default_factory=list)
    status: int = 200
    body: dict[str, Any] | None = None  # error body when status != 200
    headers: dict[str, str] = field(default_factory=dict)
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    disconnect_after: int | None = None  # close the connection after N chunks
    keepalive_for: float = 0.0  # send `: keep-alive` lines this long before anything else
    usage: dict[str, Any] | None = None  # None: computed from the request (and cache sim)
    usage_style: Literal["deepseek", "openai"] = "deepseek"
    done: bool = True  # send `data: [DONE]`
    raw_body: bytes | None = None  # sent as is (with `status`, `content_type`): HTML pages, junk
    content_type: str = "text/html"
    # A 200 event stream written as exactly these pieces (chunk_delay between them, so they
    # tend to arrive as separate reads): CRLF, BOMs, splits inside characters, anything.
    pieces: list[bytes] | None = None
    # Stop after `hold_after` chunks until `hold` is set: "the answer is streaming" for as
    # long as a test needs, with no clock involved.
    hold: asyncio.Event | None = None
    hold_after: int = 0

    @cached_property
    def lines(self) -> list[bytes]:
        """`chunks` as SSE lines, encoded once: a Reply served again (the load benchmark's
        default) costs no json.dumps per chunk."""
        return [_line(c) for c in self.chunks]


def _line(chunk: Chunk) -> bytes:
    return (chunk if isinstance(chunk, str) else "data: " + json.dumps(chunk)).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, model: str = "m") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _pieces(text: str, n: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def text_reply(
    text: str = "Hello from fake DeepSeek.",
    *,
    reasoning: str = "",
    pieces: int = 4,
    finish: str = "stop",
    **kw: Any,
) -> Reply:
    chunks: list[Chunk] = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({"reasoning_content": p}) for p in _pieces(reasoning, pieces)]
    chunks += [_chunk({"content": p}) for p in _pieces(text, pieces)]
    chunks.append(_chunk({}, finish))
    return Reply(chunks=chunks, **kw)


def tool_reply(
    calls: list[tuple[str, dict[str, Any] | str]],
    *,
    reasoning: str = "",
    text: str = "",
    fragments: int = 3,
    **kw: Any,
) -> Reply:
    """Tool calls streamed the way DeepSeek does: first delta per index carries id and name,
    later ones `id: ""`, `name: ""` and argument fragments."""
    chunks: list[Chunk] = [_chunk({"role": "assistant", "content": None})]
    chunks += [_chunk({"reasoning_content": p}) for p in _pieces(reasoning, 3)]
    chunks += [_chunk({"content": p}) for p in _pieces(text, 2)]
    for index, (name, args) in enumerate(calls):
        raw = args if isinstance(args, str) else json.dumps(args)
        head = {
            "index": index,
            "id": f"call_{index}_{name}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append(_chunk({"tool_calls": [head]}))
        for frag in _pieces(raw, fragments):
            tail = {
                "index": index,
                "id": "",
                "type": "function",
                "function": {"name": "", "arguments": frag},
            }
            chunks.append(_chunk({"tool_calls": [tail]}))
    chunks.append(_chunk({}, "tool_calls"))
    return Reply(chunks=chunks, **kw)


def error_reply(status: int, message: str = "error", *, retry_after: int | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}
    return Reply(status=status, body=body, headers=headers)


def render_prompt(body: dict[str, Any]) -> str:
    """A stand-in for the chat template: what the prefix cache compares."""
    parts = [json.dumps(body.get("tools") or [], sort_keys=False)]
    for m in body.get("messages", []):
        parts.append(f"<|{m.get('role')}|>{m.get('content') or ''}")
        if m.get("tool_calls"):
            parts.append(json.dumps(m["tool_calls"]))
    return "".join(parts)


class FakeDeepSeek:
    def __init__(self, *, cache_sim: bool = False) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[object] = []  # the client's address per request (connection reuse)
        # Per request, index-aligned with `requests`: [received, first text written] as
        # time.monotonic() values (the second is missing if no text was sent).
        self.timings: list[list[float]] = []
        self.cache_sim = cache_sim
        self._prompts: list[str] = []
        # (characters shared with an earlier request, characters in all), per cache-sim request
        self.prefix_chars: list[tuple[int, int]] = []
        self.default = text_reply
        self.url = ""
        self._arrived = asyncio.Event()  # set at each request (see wait_for_requests)
        self._runner: web.AppRunner | None = None

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` requests have arrived: woken by each arrival, no polling (e.g. "the
        first turn holds the thread's lock" is "its request arrived")."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/chat/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt_text = render_prompt(body)
        prompt = max(1, len(prompt_text) // 4)
        hit = 0
        if self.cache_sim:
            best = max((_common_prefix(prompt_text, p) for p in self._prompts), default=0)
            self.prefix_chars.append((best, len(prompt_text)))
            hit = min(prompt, (best // 4) // 64 * 64)
            self._prompts.append(prompt_text)
        out_text = "".join(
            (c["choices"][0]["delta"].get("content") or "")
            + (c["choices"][0]["delta"].get("reasoning_content") or "")
            for c in reply.chunks
            if isinstance(c, dict) and c.get("choices")
        )
        reasoning = sum(
            len(c["choices"][0]["delta"].get("reasoning_content") or "")
            for c in reply.chunks
            if isinstance(c, dict) and c.get("choices")
        )
        completion = max(1, len(out_text) // 4)
        if reply.usage_style == "openai":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": hit},
                "completion_tokens_details": {"reasoning_tokens": reasoning // 4},
            }
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": prompt - hit,
            "completion_tokens_details": {"reasoning_tokens": reasoning // 4},
        }

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        body = await request.json()
        self.requests.append(body)
        self._arrived.set()
        self.headers.append(dict(request.headers))
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername") if transport else None)
        timing = [received]  # + when the first content/reasoning delta was written
        self.timings.append(timing)
        reply = self.script.pop(0) if self.script else self.default()
        if reply.raw_body is not None:
            return web.Response(
                body=reply.raw_body, status=reply.status, content_type=reply.content_type
            )
        if reply.status != 200:
            return web.json_response(reply.body or {}, status=reply.status, headers=reply.headers)
        if reply.pieces is not None:
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            for piece in reply.pieces:
                await stream.write(piece)
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            await stream.write_eof()
            return stream
        usage = reply.usage if reply.usage is not None else self._usage(body, reply)
        chunks, lines = list(reply.chunks), list(reply.lines)
        # Usage rides on the finishing chunk (DeepSeek) or a separate `choices: []` chunk.
        for i in range(len(chunks) - 1, -1, -1):
            c = chunks[i]
            if isinstance(c, dict) and c.get("choices") and c["choices"][0].get("finish_reason"):
                if reply.usage_style == "deepseek":
                    chunks[i] = {**c, "usage": usage}
                    lines[i] = _line(chunks[i])
                else:
                    chunks.insert(i + 1, {**_chunk({}), "choices": [], "usage": usage})
                    lines.insert(i + 1, _line(chunks[i + 1]))
                break
        first_text = next((n for n, c in enumerate(chunks) if _has_text(c)), -1)
        cut = reply.disconnect_after is not None and reply.disconnect_after < len(lines)
        del lines[reply.disconnect_after if cut else len(lines) :]
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        end = loop.time() + reply.keepalive_for
        while loop.time() < end:
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(min(0.05, reply.keepalive_for))
        if reply.first_token_delay:
            await asyncio.sleep(reply.first_token_delay)
        # Chunk n is due at start + n * chunk_delay (then the cut or [DONE], one delay after
        # the last). Pacing against this schedule, not a sleep after each write, keeps the
        # rate when the loop runs late, and every chunk already due then goes out in one
        # write: at 200 streams this process is the load generator and must stay cheap.
        delay, start, n = reply.chunk_delay, loop.time(), 0
        while n < len(lines):
            if reply.hold is not None and n == reply.hold_after:
                await reply.hold.wait()
            due = n + 1
            if delay:
                due = max(due, min(len(lines), int((loop.time() - start) / delay) + 1))
            if reply.hold is not None and n < reply.hold_after:
                due = min(due, reply.hold_after)
            await resp.write(b"".join(lines[n:due]))
            if n <= first_text < due:
                timing.append(time.monotonic())
            n = due
            if delay:
                await asyncio.sleep(start + n * delay - loop.time())
        if cut:
            assert request.transport is not None
            request.transport.close()
            return resp
        if reply.done:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _has_text(chunk: Chunk) -> bool:
    if not isinstance(chunk, dict) or not chunk.get("choices"):
        return False
    delta = chunk["choices"][0].get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content"))


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
