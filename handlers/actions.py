"""Buttons on answers: feedback, "Show reasoning", "Retry".

- Feedback (`context_actions` feedback buttons): one vote per person per answer, counted per
  model (`TurnStore.vote`); changing a vote moves it.
- "Show reasoning": a modal with the reasoning the engine kept with the turn.
- "Retry": the failed turn's question runs again as a new turn in the thread; the button is
  replaced by a note so it runs once.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.thread import ThreadRef
from bot.slack.blocks import (
    FEEDBACK_ACTION,
    REASONING_ACTION,
    RETRY_ACTION,
    TurnRef,
    reasoning_view,
    without_retry,
)
from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.slack.services import SlackServices
from bot.store.claims import claim_once

log = structlog.get_logger(__name__)

GONE = "That answer is too old: its details are no longer kept."
UNAVAILABLE = "My memory store is unavailable right now. Please try again shortly."


def _team(body: dict[str, Any]) -> str:
    team = body.get("team") or {}
    user = body.get("user") or {}
    return str(team.get("id") or user.get("team_id") or "")


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def register(app: AsyncApp, services: SlackServices) -> None:
    redis, records, turns = services.deps.redis, services.deps.records, services.turns

    @app.action(FEEDBACK_ACTION)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        try:
            data = json.loads(str(action.get("value") or ""))
            vote = data.get("vote")
        except (ValueError, AttributeError):
            return
        ref = TurnRef.loads(str(action.get("value") or ""))
        if ref is None or vote not in ("up", "down"):
            return
        try:
            thread = ThreadRef(_team(body), ref.channel, ref.thread_ts)
            await records.vote(thread, ref.turn_id, user=_user(body), vote=vote, model=ref.model)
        except (RedisError, OSError) as exc:
            log.warning("feedback_store_failed", error=type(exc).__name__)
            return
        log.info("feedback", vote=vote, model=ref.model, turn_id=ref.turn_id)

    @app.action(REASONING_ACTION)
    async def on_show_reasoning(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        ref = TurnRef.loads(str(action.get("value") or ""))
        trigger = body.get("trigger_id")
        if ref is None or not isinstance(trigger, str):
            return
        thread = ThreadRef(_team(body), ref.channel, ref.thread_ts)
        try:
            reasoning = await records.reasoning(thread, ref.turn_id)
        except (RedisError, OSError) as exc:
            log.warning("reasoning_load_failed", error=type(exc).__name__)
            reasoning = None
        view = reasoning_view(reasoning if reasoning is not None else GONE)
        try:
            await client.views_open(trigger_id=trigger, view=view)
        except SLACK_ERRORS as exc:
            log.warning("reasoning_modal_failed", error=slack_error_code(exc))

    @app.action(RETRY_ACTION)
    async def on_retry(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        ref = TurnRef.loads(str(action.get("value") or ""))
        team, user = _team(body), _user(body)
        if ref is None or not (team and user):
            return
        try:
            if not await claim_once(redis, team, [f"retry:{ref.turn_id}"]):
                return  # pressed twice, or by two people at once
        except (RedisError, OSError) as exc:
            log.warning("retry_claim_failed", error=type(exc).__name__)
            await _tell(client, ref.channel, user, UNAVAILABLE)
            return
        message = body.get("message") or {}
        note = f"Retried by <@{user}>"
        if isinstance(message.get("ts"), str):
            try:
                await client.chat_update(
                    channel=ref.channel,
                    ts=message["ts"],
                    text=str(message.get("text") or "Retried."),
                    blocks=without_retry(list(message.get("blocks") or []), note),
                )
            except SLACK_ERRORS as exc:
                log.info("retry_button_update_failed", error=slack_error_code(exc))
        try:
            rendered = await turns.retry(
                team, user, ref.channel, ref.thread_ts, ref.turn_id, context.bot_user_id or ""
            )
        except (RedisError, OSError) as exc:
            log.warning("retry_load_failed", error=type(exc).__name__)
            await _tell(client, ref.channel, user, UNAVAILABLE)
            return
        if rendered is None:
            await _tell(client, ref.channel, user, GONE)


async def _tell(client: AsyncWebClient, channel: str, user: str, text: str) -> None:
    """A short note only the person who pressed the button sees."""
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SLACK_ERRORS as exc:
        log.info("ephemeral_failed", error=slack_error_code(exc))
