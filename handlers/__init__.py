"""The one place that wires Slack surfaces to the Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from handlers import command, home


def register(app: AsyncApp, deps: Deps) -> None:
    """Register every Slack surface's listeners on `app`."""
    command.register(app, deps)
    home.register(app, deps)
