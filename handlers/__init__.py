"""The one place that wires Slack listeners to the Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.services import SlackServices
from handlers import actions, assistant, home, mentions, messages, slash_command


def register(app: AsyncApp, services: SlackServices) -> None:
    """Register every Slack surface's listeners on `app`, each with the same services."""
    slash_command.register(app, services)
    home.register(app, services)
    # The assistant middleware goes first: it claims DM messages inside assistant threads.
    assistant.register(app, services)
    mentions.register(app, services)
    messages.register(app, services)
    actions.register(app, services)
