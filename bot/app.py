"""The composition root: settings in, a ready Slack app out (services, Bolt, every listener).
Nothing is built at import time."""

from __future__ import annotations

from redis.asyncio import Redis
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.config import Settings
from bot.deps import build_deps
from bot.slack.server import BotApp
from bot.slack.services import SlackServices


def build_app(settings: Settings, *, redis: Redis | None = None) -> BotApp:
    """Build every shared part and the Bolt app, and register the Slack surfaces.

    Raises ConfigError when a setting the Slack surfaces need is missing."""
    settings.require("slack_bot_token", "deepseek_api_key")
    if not settings.socket_mode:
        settings.require("slack_signing_secret")
    assert settings.slack_bot_token is not None
    token = settings.slack_bot_token.get_secret_value()
    slack = AsyncWebClient(
        token=token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )
    deps = build_deps(settings, redis=redis, slack=slack)
    secret = settings.slack_signing_secret
    bolt = AsyncApp(
        client=slack,
        signing_secret=secret.get_secret_value() if secret else "",
        # `BotApp._slack` verifies every HTTP request on its raw bytes before Bolt sees it, and
        # Socket Mode needs no signature: a second HMAC in Bolt's middleware would only repeat it.
        request_verification_enabled=False,
        process_before_response=False,
    )
    services = SlackServices.build(deps)
    handlers.register(bolt, services)
    return BotApp(bolt=bolt, services=services)
