"""The Slack Web API client keeps one pooled HTTP session while the app runs."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from bot.app import build_app
from bot.config import Settings
from tests.conftest import RunningBot


async def test_one_session_while_running(bot: RunningBot) -> None:
    session = bot.app.deps.slack.session if bot.app.deps.slack else None
    assert isinstance(session, aiohttp.ClientSession) and not session.closed
    await bot.app.deps.slack.auth_test()  # type: ignore[union-attr]
    await bot.app.deps.slack.auth_test()  # type: ignore[union-attr]
    assert bot.app.deps.slack.session is session  # type: ignore[union-attr]


async def test_session_closed_at_cleanup(settings: Settings, redis: Redis) -> None:
    app = build_app(settings, redis=redis)
    runner = web.AppRunner(app.web_app())
    await runner.setup()
    assert app.deps.slack is not None
    session = app.deps.slack.session
    assert session is not None and not session.closed
    await app.deps.aclose()
    await runner.cleanup()
    assert session.closed and app.deps.slack.session is None
