"""The assistant / agent pane, through Bolt's `AsyncAssistant` middleware.

- `assistant_thread_started`: suggested prompts for the new thread.
- `assistant_thread_context_changed`: acknowledged (answers do not depend on the channel the
  person is viewing, so Bolt's default context store, which costs Slack calls, is not used).
- user messages: a turn like any DM, with `assistant.threads.setStatus` ("is thinking…" with
  loading messages, then each tool's label) while the answer is prepared, and the thread's
  title set from its first question.
"""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.slack.format import clean_input, title_from
from bot.slack.incoming import Incoming, incoming
from bot.slack.services import SlackServices

log = structlog.get_logger(__name__)

SUGGESTED_TITLE = "Ask DeepSeek anything"
SUGGESTED_PROMPTS = [
    {
        "title": "Explain a concept",
        "message": "Explain how Redis Streams consumer groups work, with a short example.",
    },
    {
        "title": "Review some code",
        "message": "Review this function for bugs and readability: ",
    },
    {
        "title": "Draft a message",
        "message": "Draft a short, friendly announcement for my team about: ",
    },
    {
        "title": "What's new?",
        "message": "Search the web for this week's most important news about: ",
    },
]
THINKING = "is thinking…"
LOADING_MESSAGES = ["Thinking…", "Reading the thread…", "Working out an answer…"]


def register(app: AsyncApp, services: SlackServices) -> None:
    turns = services.turns
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def on_thread_started(body: dict[str, Any], client: AsyncWebClient) -> None:
        thread = (body.get("event") or {}).get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not (isinstance(channel, str) and isinstance(thread_ts, str)):
            return
        try:
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=thread_ts,
                title=SUGGESTED_TITLE,
                prompts=SUGGESTED_PROMPTS,
            )
        except SLACK_ERRORS as exc:
            log.warning("suggested_prompts_failed", error=slack_error_code(exc))

    @assistant.thread_context_changed
    async def on_context_changed() -> None:
        return None

    @assistant.user_message
    async def on_user_message(
        body: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        msg = incoming(body, "assistant")
        if msg is None:
            log.info("assistant_message_ignored", reason="malformed")
            return
        bot_user_id = context.bot_user_id or ""
        pane = _Pane(client, msg, bot_user_id)
        await turns.answer(msg, bot_user_id=bot_user_id, status=pane.status, on_start=pane.start)

    app.use(assistant)


class _Pane:
    """Status and title calls for one message; best effort (a failure only logs)."""

    def __init__(self, client: AsyncWebClient, msg: Incoming, bot_user_id: str) -> None:
        self.client = client
        self.msg = msg
        self.bot_user_id = bot_user_id

    async def start(self, first: bool) -> None:
        await self.status(THINKING, LOADING_MESSAGES)
        if first:
            title = title_from(clean_input(self.msg.text, bot_user_id=self.bot_user_id))
            try:
                await self.client.assistant_threads_setTitle(
                    channel_id=self.msg.channel, thread_ts=self.msg.thread_ts, title=title
                )
            except SLACK_ERRORS as exc:
                log.info("set_title_failed", error=slack_error_code(exc))

    async def status(self, text: str, loading: list[str] | None = None) -> None:
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=self.msg.channel,
                thread_ts=self.msg.thread_ts,
                status=text,
                loading_messages=loading,
            )
        except SLACK_ERRORS as exc:
            log.info("set_status_failed", error=slack_error_code(exc))
