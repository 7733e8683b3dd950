"""Runs `/deepseek` commands against prefs, the ledger and an admin check (surface-neutral).

A surface parses nothing itself: it hands the text after its command prefix and who is asking
to `CommandService.run_text` and shows the `CommandResult`. The Slack `/deepseek` handler and
the terminal's `/model`, `/cost`, ... call exactly this; they differ only in `Style` (command
prefix, how people and channels are named, whether Block Kit is built) and in how they
deliver a result (ephemeral message or terminal output; a CSV to a DM or a file).

Results carry standard markdown in `text` (complete on its own; short replies use only
`code` and `-` lists so the same text reads right as Slack mrkdwn), and optionally Block Kit
`blocks` with a one-line `summary` for notifications.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.commands.language import (
    BadArgument,
    Command,
    ExportCost,
    Help,
    ResetPrefs,
    SetBudget,
    SetPref,
    ShowBudget,
    ShowCost,
    ShowSettings,
    ShowUsage,
    help_text,
    is_admin_only,
    parse,
    subcommand_name,
)
from bot.config import Settings
from bot.deepseek.pricing import format_usd
from bot.store.prefs import Prefs, TurnSettings
from bot.usage.ledger import Ledger
from bot.usage.report_blocks import (
    HomeData,
    budget_line,
    cost_blocks,
    settings_fields,
    usage_blocks,
)
from bot.usage.reports import (
    cost_markdown,
    daily_csv,
    format_money,
    percent_of,
    period_span,
    period_title,
    usage_markdown,
)

log = structlog.get_logger(__name__)

IsAdmin = Callable[[str, str], Awaitable[bool]]  # (team, user) -> is an admin


def _plain(name: str) -> str:
    return name


@dataclass(frozen=True, slots=True)
class Style:
    """How a surface names things. Slack: prefix "/deepseek ", `<@U1>` mentions, blocks."""

    prefix: str = "/"
    user: Callable[[str], str] = _plain
    channel: Callable[[str], str] = _plain
    blocks: bool = False
    export_to: str = "a file"  # where `cost export` puts the CSV, for the help text


TERMINAL_STYLE = Style(prefix="/")


async def always_admin(team: str, user: str) -> bool:
    """The terminal's admin check: whoever runs the bot locally administers it."""
    return True


@dataclass(frozen=True, slots=True)
class Caller:
    team: str
    user: str
    channel: str  # "" where there is none (App Home)


@dataclass(frozen=True, slots=True)
class ExportFile:
    filename: str
    title: str
    content: str  # CSV text
    rows: int


@dataclass(frozen=True, slots=True)
class CommandResult:
    text: str
    blocks: list[dict[str, Any]] | None = None
    summary: str = ""  # one line, for notifications when `blocks` are shown
    file: ExportFile | None = None
    ok: bool = True  # False: the command was refused or its argument was bad


@dataclass
class CommandService:
    settings: Settings
    prefs: Prefs
    ledger: Ledger
    is_admin: IsAdmin
    style: Style = field(default_factory=Style)

    async def run_text(self, caller: Caller, text: str) -> CommandResult:
        """Parse and run one command. Never raises for anything the caller typed; store
        errors (redis) propagate for the surface to report."""
        return await self.run(caller, parse(text))

    async def run(self, caller: Caller, command: Command) -> CommandResult:
        if is_admin_only(command) and not await self.is_admin(caller.team, caller.user):
            log.info("command_denied", command=subcommand_name(command))
            return CommandResult(f"`{subcommand_name(command)}` is for workspace admins.", ok=False)
        match command:
            case BadArgument(message):
                return CommandResult(message, ok=False)
            case Help(unknown):
                return await self._help(caller, unknown)
            case SetPref():
                return await self._set_pref(caller, command)
            case ResetPrefs():
                await self.prefs.clear(caller.team, "user", caller.user)
                now = await self._effective(caller)
                return CommandResult(
                    "Your own settings are cleared. You now get:\n" + self._settings_list(now)
                )
            case ShowSettings():
                return await self._show_settings(caller)
            case ShowUsage(period):
                days, m = await self.ledger.reports.user_usage(caller.team, caller.user, period)
                line = await self._budget_line(caller)
                text = usage_markdown(period, days, m) + (f"\n\n{line}" if line else "")
                return CommandResult(
                    text,
                    blocks=usage_blocks(period, days, m, line) if self.style.blocks else None,
                    summary=f"Your usage, {period_title(period)}: {format_usd(m.cost)}",
                )
            case ShowCost(period):
                report = await self.ledger.reports.report(caller.team, period)
                style = self.style
                return CommandResult(
                    cost_markdown(report, user=style.user, channel=style.channel),
                    blocks=cost_blocks(report, user=style.user, channel=style.channel)
                    if style.blocks
                    else None,
                    summary=f"Cost, {period_title(period)}: {format_usd(report.total.cost)}",
                )
            case ExportCost(period):
                return await self._export(caller, command)
            case SetBudget():
                return await self._set_budget(caller, command)
            case ShowBudget():
                return await self._show_budget(caller)
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    # --- settings -------------------------------------------------------------------------

    async def _effective(self, caller: Caller) -> TurnSettings:
        return await self.prefs.effective(caller.team, caller.channel, caller.user)

    def _settings_list(self, prefs: TurnSettings) -> str:
        model_id = self.settings.model_id(prefs.model)
        return "\n".join(f"- {k}: {v}" for k, v in settings_fields(prefs, model_id))

    async def _show_settings(self, caller: Caller) -> CommandResult:
        prefs = await self._effective(caller)
        text = "Your settings here:\n" + self._settings_list(prefs)
        line = await self._budget_line(caller)
        p = self.style.prefix
        text += f"\nChange them with `{p}model`, `{p}thinking` or `{p}effort`."
        return CommandResult(text + (f"\n{line}" if line else ""))

    async def _set_pref(self, caller: Caller, cmd: SetPref) -> CommandResult:
        owner = caller.user if cmd.scope == "user" else caller.channel
        await self.prefs.set(caller.team, cmd.scope, owner, cmd.name, cmd.value)
        log.info("pref_set", scope=cmd.scope, name=cmd.name, value=cmd.value)
        now = await self._effective(caller)
        shown = dict(settings_fields(now, self.settings.model_id(now.model)))[cmd.name.title()]
        if cmd.scope == "channel":
            if cmd.value is None:
                return CommandResult(
                    f"This channel no longer sets a default {cmd.name}. You get: {shown}."
                )
            return CommandResult(
                f"This channel's default {cmd.name} is now `{cmd.value}`. "
                "People who chose their own keep it."
            )
        if cmd.value is None:
            return CommandResult(f"Your {cmd.name} choice is cleared. You now get: {shown}.")
        return CommandResult(f"{cmd.name.title()}: {shown}. This applies from your next question.")

    # --- usage, cost, budgets -----------------------------------------------------------------

    async def _budget_line(self, caller: Caller) -> str:
        caps = await self.ledger.budgets.caps(caller.team)
        if caps.user_daily is None and caps.workspace_monthly is None:
            return ""
        user_today, month = await self.ledger.budgets.spend(caller.team, caller.user)
        admin = caps.workspace_monthly is not None and await self.is_admin(caller.team, caller.user)
        return budget_line(caps, user_today, month, admin=admin)

    async def _export(self, caller: Caller, cmd: ExportCost) -> CommandResult:
        rows = await self.ledger.reports.daily_rows(caller.team, cmd.period)
        title = period_title(cmd.period)
        if not rows:
            return CommandResult(f"No usage {title}: there is nothing to export.")
        first, last = rows[0].day.isoformat(), rows[-1].day.isoformat()
        export = ExportFile(
            filename=f"deepseek-cost-{caller.team}-{first}-to-{last}.csv",
            title=f"DeepSeek cost, {title} ({period_span([rows[0].day, rows[-1].day])})",
            content=daily_csv(rows),
            rows=len(rows),
        )
        log.info("cost_exported", period=cmd.period, rows=len(rows))
        return CommandResult(
            f"Cost export, {title}: {len(rows)} rows, one per day and model.", file=export
        )

    def _at_cap(self) -> str:
        if self.settings.over_budget_action == "flash":
            return "At the cap, answers move to Flash."
        return "At the cap, new questions are politely refused."

    async def _set_budget(self, caller: Caller, cmd: SetBudget) -> CommandResult:
        await self.ledger.budgets.set_cap(caller.team, cmd.scope, cmd.micros, caller.user)
        what = "Daily cap per person" if cmd.scope == "user" else "Workspace monthly cap"
        if cmd.micros is None:
            return CommandResult(f"{what} removed.")
        text = f"{what} set to {format_money(cmd.micros)}. {self._at_cap()}"
        if cmd.scope == "workspace":
            _, month = await self.ledger.budgets.spend(caller.team, caller.user)
            text += (
                f" Spent so far this month: {format_usd(month)} "
                f"({percent_of(month, cmd.micros)}%). Admins are told at 80% and at 100%."
            )
        return CommandResult(text)

    async def _show_budget(self, caller: Caller) -> CommandResult:
        b = await self.ledger.budgets.caps(caller.team)
        _, month = await self.ledger.budgets.spend(caller.team, caller.user)
        lines = []
        for what, cap, by in (
            ("Daily cap per person", b.user_daily, b.user_daily_by),
            ("Workspace monthly cap", b.workspace_monthly, b.workspace_monthly_by),
        ):
            setter = f" (set by {self.style.user(by)})" if by else ""
            lines.append(f"- {what}: {format_money(cap) if cap is not None else 'none'}{setter}")
        lines.append(f"- Workspace spend this month: {format_usd(month)}")
        p = self.style.prefix
        lines.append(
            f"{self._at_cap()} Set caps in US dollars like `{p}budget user 5/day` or "
            f"`{p}budget workspace 200/month`; `off` removes one."
        )
        return CommandResult("\n".join(lines))

    async def _help(self, caller: Caller, unknown: str) -> CommandResult:
        admin = await self.is_admin(caller.team, caller.user)
        text = help_text(self.style.prefix, admin=admin, export_to=self.style.export_to)
        if unknown:
            text = f"I don't know `{unknown}`. Here is what I can do:\n{text}"
        return CommandResult(text)

    # --- App Home -----------------------------------------------------------------------------

    async def home(self, team: str, user: str) -> HomeData:
        """What the App Home tab shows `user`; admins also get the workspace's last 7 days."""
        caller = Caller(team, user, "")
        prefs = await self._effective(caller)
        days, usage = await self.ledger.reports.user_usage(team, user, "7d")
        workspace = None
        if await self.is_admin(team, user):
            workspace = await self.ledger.reports.report(team, "7d")
        return HomeData(
            prefs=prefs,
            model_id=self.settings.model_id(prefs.model),
            days=days,
            usage=usage,
            budget_line=await self._budget_line(caller),
            workspace=workspace,
        )
