"""The Slack side's services, built once per app and handed to every listener."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.service import CommandService, Style
from bot.deps import Deps
from bot.slack.admins import SlackAdmins
from bot.slack.turns import SlackTurns

# How `/deepseek` replies and the App Home name things in Slack.
SLACK_STYLE = Style(
    prefix="/deepseek ",
    user=lambda u: f"<@{u}>",
    # A DM cannot be linked like a channel; name it by its id.
    channel=lambda c: f"DM {c}" if c.startswith("D") else f"<#{c}>",
    blocks=True,
    export_to="your DM",
)


@dataclass(frozen=True, slots=True)
class SlackServices:
    """Everything a Slack listener uses. Every `handlers` module registers with
    `register(app, services)` and takes what it needs from here."""

    deps: Deps
    turns: SlackTurns  # a message in, an answer streamed into its thread
    admins: SlackAdmins
    commands: CommandService  # `/deepseek` and the App Home's figures

    @classmethod
    def build(cls, deps: Deps) -> SlackServices:
        """Build the services on `deps` (which must have a Slack client) and subscribe the
        admins to budget alerts. Call once per app."""
        assert deps.slack is not None
        admins = SlackAdmins(deps.settings, deps.redis, deps.slack)
        deps.ledger.budgets.on_alert(admins.notify_budget)
        commands = CommandService(
            deps.settings, deps.prefs, deps.ledger, admins.is_admin, SLACK_STYLE
        )
        return cls(deps, SlackTurns(deps, admins), admins, commands)
