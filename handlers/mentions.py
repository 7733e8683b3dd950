"""`app_mention`: someone mentions the bot in a channel; the answer goes into the thread of the
mention (a top-level mention starts one). Later replies in that thread need no mention
(handlers/messages.py)."""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.slack.incoming import incoming
from bot.slack.services import SlackServices

log = structlog.get_logger(__name__)


def register(app: AsyncApp, services: SlackServices) -> None:
    turns = services.turns

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event") or {}
        if event.get("bot_id") and services.deps.settings.ignore_other_bots:
            return
        msg = incoming(body, "channel")
        if msg is None:
            log.info("mention_ignored", reason="malformed")
            return
        await turns.answer(msg, bot_user_id=context.bot_user_id or "")
