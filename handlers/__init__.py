"""The one place that wires Slack surfaces to the Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import Deps
from bot.slack.turns import SlackTurns
from handlers import actions, assistant, home, mentions, messages
from handlers import slash_command as command


def register(app: AsyncApp, deps: Deps) -> None:
    """Register every Slack surface's listeners on `app`."""
    command.register(app, deps)
    home.register(app, deps)
    # The assistant middleware goes first: it claims DM messages inside assistant threads.
    turns = SlackTurns(deps)
    assistant.register(app, deps, turns)
    mentions.register(app, deps, turns)
    messages.register(app, deps, turns)
    actions.register(app, deps, turns)
