"""What the DeepSeek transport costs end to end: `bench.load` against a bot process whose
`DeepSeekClient.stream` is replaced, for the measurement only, by a happy-path aiohttp version
(same request body, same SSE parser, same total deadline; no retries or error mapping).

    .venv/bin/python -m bench.transport_probe --threads 50 200 --turns 3 --no-round-trips
    .venv/bin/python -m bench.transport_probe --one-deadline --threads 50 200 --turns 3 \
        --no-round-trips

`--one-deadline` drops the per-read `asyncio.timeout_at` (the deadline is then checked only
between reads, which a real client must not do: a stream of keep-alives would never end).
Every other argument is `bench.load`'s.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from bench import load
from tests import replica

PATCH = "import bench.transport_probe as p; p.install({one})"


def install(one_deadline: bool) -> None:
    """Replace DeepSeekClient.stream in this (the bot's) process."""
    import aiohttp

    from bot.config import Effort
    from bot.deepseek import DeepSeekClient
    from bot.events import StreamEvent
    from bot.sse import StreamParser

    session: list[aiohttp.ClientSession] = []

    async def stream(
        self: DeepSeekClient,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        thinking: bool,
        effort: Effort,
        max_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        settings = self._settings
        if not session:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=settings.deepseek_read_timeout)
            connector = aiohttp.TCPConnector(limit=200)
            session.append(aiohttp.ClientSession(timeout=timeout, connector=connector))
        body = self.build_body(
            model=model,
            messages=messages,
            tools=tools,
            thinking=thinking,
            effort=effort,
            max_tokens=max_tokens,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.deepseek_total_timeout
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
        }
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        url = f"{settings.deepseek_base_url}/chat/completions"
        async with session[0].post(url, data=data, headers=headers) as resp:
            parser = StreamParser()
            chunks = resp.content.iter_any()
            while not parser.done:
                try:
                    if one_deadline:
                        if loop.time() > deadline:
                            raise TimeoutError
                        chunk = await anext(chunks)
                    else:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                for event in parser.feed(chunk):
                    yield event
            for event in parser.close():
                yield event
            yield parser.finish()

    DeepSeekClient.stream = stream  # type: ignore[method-assign]


def main() -> None:
    one = "--one-deadline" in sys.argv
    argv = [a for a in sys.argv[1:] if a != "--one-deadline"]
    code = f"{PATCH.format(one=one)}; import runpy; runpy.run_module('bot', run_name='__main__')"
    spawn = asyncio.create_subprocess_exec

    async def patched(program: str, *args: str, **kw: Any) -> asyncio.subprocess.Process:
        if args[:2] == ("-m", "bot"):
            args = ("-c", code, *args[2:])
        return await spawn(program, *args, **kw)

    replica.asyncio.create_subprocess_exec = patched  # type: ignore[attr-defined]
    sys.argv = [sys.argv[0], *argv]
    asyncio.run(load.main(load.parse_args()))


if __name__ == "__main__":
    main()
