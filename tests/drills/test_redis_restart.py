"""Drill: the real redis-server is killed mid-answer and started again (append-only on)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from bot.app import build_app
from bot.contracts.events import EngineEvent, TurnDone, TurnFailed
from bot.contracts.stream import TextDelta
from bot.contracts.thread import ThreadRef
from bot.core.engine import Turn
from tests.conftest import RedisProcess, free_port, make_settings
from tests.fakes.deepseek import FakeDeepSeek, text_reply
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.slow
THREAD = ThreadRef("T1", "C1", "1700000000.000001")


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    server = RedisProcess(appendonly=True)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


async def test_redis_restart_mid_answer(
    aof_redis: RedisProcess, fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> None:
    settings = make_settings(fake_slack, fake_deepseek, redis_url=aof_redis.url)
    app = build_app(settings)
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    health = f"http://127.0.0.1:{port}/healthz"
    engine = app.deps.engine
    http = httpx.AsyncClient()
    try:
        fake_deepseek.push(text_reply("The answer is 42."))
        first = [e async for e in engine.run(Turn(THREAD, "U1", "remember 42"))]
        assert isinstance(first[-1], TurnDone)

        # Kill Redis while the second answer streams.
        fake_deepseek.push(text_reply("A long answer " * 20, pieces=10, chunk_delay=0.05))
        events: list[EngineEvent] = []
        async for event in engine.run(Turn(THREAD, "U1", "tell me more")):
            events.append(event)
            if isinstance(event, TextDelta) and len(events) == 2:
                aof_redis.stop()
        assert isinstance(events[-1], TurnDone | TurnFailed)  # never hangs, never raises
        if isinstance(events[-1], TurnFailed):
            assert events[-1].error.user_message
        assert (await http.get(health)).status_code == 503

        aof_redis.start()  # same port, same dir: the append-only file is replayed
        for _ in range(100):
            if (await http.get(health)).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await http.get(health)).status_code == 200

        fake_deepseek.push(text_reply("Still 42."))
        third = [e async for e in engine.run(Turn(THREAD, "U1", "what number?"))]
        assert isinstance(third[-1], TurnDone)
        sent = [m["content"] for m in fake_deepseek.requests[-1]["messages"]]
        assert "remember 42" in sent and "The answer is 42." in sent  # nothing lost
    finally:
        await http.aclose()
        await app.aclose()
        await runner.cleanup()
