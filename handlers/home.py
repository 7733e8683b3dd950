"""The App Home tab: the person's settings and own usage; admins also see the workspace's
last 7 days. Published on every `app_home_opened` for the Home tab."""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.errors import slack_error_code
from bot.slack.services import SLACK_STYLE, SlackServices
from bot.usage.report_blocks import home_view

log = structlog.get_logger(__name__)


def register(app: AsyncApp, services: SlackServices) -> None:
    service = services.commands

    @app.event("app_home_opened")
    async def on_home_opened(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        team = context.team_id or event.get("view", {}).get("team_id", "")
        try:
            data = await service.home(team, user)
            view = home_view(
                data, prefix=SLACK_STYLE.prefix, user=SLACK_STYLE.user, channel=SLACK_STYLE.channel
            )
            await client.views_publish(user_id=user, view=view)
        except (RedisError, OSError) as exc:
            log.error("home_failed", error=type(exc).__name__)
        except SlackApiError as exc:
            log.warning("home_publish_failed", error=slack_error_code(exc))
