"""End to end: a mention whose answer needs a search, with thinking on. The fake DeepSeek
calls `web_search`, the real tool asks a SearXNG-shaped server, the result goes back to the
model with its reasoning, and the final answer streams into the thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from tests.conftest import free_port, make_settings, start_bot, stop_bot
from tests.fakes.deepseek import FakeDeepSeek, text_reply, tool_reply
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.test_slack_e2e import answered, mention


@pytest.fixture
async def searxng() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    asked: list[dict[str, str]] = []

    async def search(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        return web.json_response(
            {
                "query": request.query["q"],
                "results": [
                    {
                        "title": "Redis 8.2 release notes",
                        "url": "https://redis.io/docs/latest/release-notes/",
                        "content": "Redis 8.2 was released with new stream commands.",
                    }
                ],
            }
        )

    app = web.Application()
    app.router.add_get("/search", search)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", asked
    await runner.cleanup()


async def test_mention_answer_uses_web_search_with_thinking(
    fake_slack: FakeSlack,
    fake_deepseek: FakeDeepSeek,
    redis: Redis,
    redis_url: str,
    searxng: tuple[str, list[dict[str, str]]],
) -> None:
    url, asked = searxng
    settings = make_settings(
        fake_slack, fake_deepseek, redis_url=redis_url, searxng_url=url, default_thinking=True
    )
    bot, runner = await start_bot(settings, redis, fake_slack, fake_deepseek)
    try:
        fake_deepseek.push(
            tool_reply(
                [("web_search", {"query": "latest redis release"})],
                reasoning="I need current facts; search.",
            ),
            text_reply("The latest is Redis 8.2.", reasoning="The result says 8.2."),
        )
        top = fake_slack.add_message("C1", f"<@{BOT_USER}> what is the latest redis release?")
        assert (await bot.slack.event(mention(top))).status_code == 200
        [answer] = await answered(bot, "C1", top.ts)
    finally:
        await stop_bot(bot, runner)

    assert asked == [{"q": "latest redis release", "format": "json"}]
    first, second = fake_deepseek.requests
    assert first["thinking"] == {"type": "enabled"} and first["tool_choice"] == "auto"
    assert "temperature" not in first
    assert first["tools"][0]["function"]["name"] == "web_search"
    call, result = second["messages"][-2:]
    assert call["reasoning_content"] == "I need current facts; search."
    assert call["tool_calls"][0]["function"]["name"] == "web_search"
    assert result["role"] == "tool" and "Redis 8.2 release notes" in result["content"]
    assert answer.text == "The latest is Redis 8.2."
    # The search showed as a task update while it ran; the reasoning was not posted.
    chunks: list[dict[str, Any]] = answer.chunks
    titles = [c.get("title", "") for c in chunks if c.get("type") == "task_update"]
    assert any("Searching the web for “latest redis release”" in t for t in titles)
    assert "I need current facts" not in answer.text
