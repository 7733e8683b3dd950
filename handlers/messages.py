"""`message` events: direct messages (every one is a turn; a top-level DM starts a thread) and
follow-ups in channel threads the bot already answered in (no mention needed; on unless
ANSWER_FOLLOW_UPS=false). Everything else — the bot's own messages, other bots (unless
IGNORE_OTHER_BOTS=false), edits, deletions, joins and other subtypes, channel messages that
mention the bot (they arrive as `app_mention` too) — is acknowledged and ignored.

DM replies inside an assistant thread are routed to handlers/assistant.py by Bolt's
assistant middleware before they get here."""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.contracts.thread import ThreadRef
from bot.slack.incoming import classify, incoming
from bot.slack.services import SlackServices

log = structlog.get_logger(__name__)


def register(app: AsyncApp, services: SlackServices) -> None:
    turns, settings = services.turns, services.deps.settings

    @app.event("message")
    async def on_message(body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event")
        if not isinstance(event, dict):
            return
        route = classify(
            event,
            bot_user_id=context.bot_user_id or "",
            bot_id=context.bot_id or "",
            ignore_other_bots=settings.ignore_other_bots,
            answer_follow_ups=settings.answer_follow_ups,
        )
        if route == "ignore":
            return
        msg = incoming(body, "im" if route == "dm" else "channel")
        if msg is None:
            log.info("message_ignored", reason="malformed")
            return
        if route == "follow_up":
            try:
                joined = await turns.joined(ThreadRef(msg.team, msg.channel, msg.thread_ts))
            except (RedisError, OSError) as exc:  # cannot tell: stay quiet rather than butt in
                log.warning("follow_up_check_failed", error=type(exc).__name__)
                return
            if not joined:
                return
        await turns.answer(msg, bot_user_id=context.bot_user_id or "")
