"""Builds the Block Kit views of usage: reports, budget lines, the App Home tab (pure)."""

# Built with slack_sdk's block models, which check Slack's limits (ten fields a section, 3,000
# characters a text) when serialised. Two-column section fields serve as small tables: a name
# on the left, its figures on the right.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.deepseek.pricing import format_usd
from bot.store.prefs import TurnSettings
from bot.usage.budgets import Caps
from bot.usage.reports import (
    Metrics,
    Namer,
    Period,
    Report,
    format_money,
    member_figures,
    percent_of,
    period_span,
    period_title,
    summary_lines,
    top,
)

TOP_N = 5  # a section holds ten fields: five name/figures pairs

_SOURCE_WORDS = {
    "user": "your choice",
    "channel": "this channel's default",
    "default": "the default",
}


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _fields(pairs: list[tuple[str, str]]) -> SectionBlock:
    return SectionBlock(fields=[MarkdownTextObject(text=f"*{k}*\n{v}") for k, v in pairs][:10])


def _members(title: str, members: Mapping[str, Metrics], namer: Namer) -> list[Block]:
    ranked = top(members, TOP_N)
    if not ranked:
        return []
    fields: list[str] = []
    for name, m in ranked:
        fields += [namer(name), member_figures(m)]
    return [_section(f"*{title}*"), SectionBlock(fields=fields)]


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def to_dicts(blocks: list[Block]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks]


def cost_blocks(report: Report, *, user: Namer, channel: Namer) -> list[dict[str, Any]]:
    """The admin cost report: totals, by model, top users, top channels, prices."""
    blocks: list[Block] = [
        HeaderBlock(text=f"Cost, {period_title(report.period)}"),
        _context(period_span(report.days)),
    ]
    if not report.total.requests:
        blocks.append(_section("No usage recorded in this period."))
        return to_dicts(blocks)
    blocks.append(_fields(summary_lines(report.total)))
    model_fields: list[str] = []
    for model, m in top(report.by_model, TOP_N):
        model_fields += [
            f"`{model}`",
            f"{format_usd(m.cost)} · {m.requests:,} req · in {m.input:,} / out {m.out:,}",
        ]
    blocks += [_section("*By model*"), SectionBlock(fields=model_fields)]
    blocks += _members("Top users", report.by_user, user)
    blocks += _members("Top channels", report.by_channel, channel)
    blocks.append(_context("Prices: " + (" | ".join(report.pricing) or "not recorded")))
    return to_dicts(blocks)


def usage_blocks(
    period: Period, days: list[date], m: Metrics, budget_line: str = ""
) -> list[dict[str, Any]]:
    """A person's own usage."""
    blocks: list[Block] = [
        HeaderBlock(text=f"Your usage, {period_title(period)}"),
        _context(period_span(days)),
    ]
    if m.requests:
        blocks.append(_fields([p for p in summary_lines(m) if p[0] != "Saved by cache"]))
    else:
        blocks.append(_section("No requests in this period."))
    if budget_line:
        blocks.append(_context(budget_line))
    return to_dicts(blocks)


def settings_fields(prefs: TurnSettings, model_id: str) -> list[tuple[str, str]]:
    return [
        ("Model", f"{prefs.model} (`{model_id}`), {_SOURCE_WORDS[prefs.sources['model']]}"),
        (
            "Thinking",
            f"{'on' if prefs.thinking else 'off'}, {_SOURCE_WORDS[prefs.sources['thinking']]}",
        ),
        ("Effort", f"{prefs.effort}, {_SOURCE_WORDS[prefs.sources['effort']]}"),
    ]


def budget_line(caps: Caps, user_today: int, workspace_month: int, *, admin: bool) -> str:
    """One line on caps and spend against them; "" when there is no cap. Only admins see
    workspace figures; others learn only that the workspace cap was reached."""
    parts = []
    if caps.user_daily is not None:
        parts.append(
            f"Daily cap per person {format_money(caps.user_daily)}: "
            f"you spent {format_usd(user_today)} today "
            f"({percent_of(user_today, caps.user_daily)}%)."
        )
    cap = caps.workspace_monthly
    if cap is not None and admin:
        parts.append(
            f"Workspace monthly cap {format_money(cap)}: {format_usd(workspace_month)} spent "
            f"({percent_of(workspace_month, cap)}%)."
        )
    elif cap is not None and workspace_month >= cap:
        parts.append("The workspace reached its monthly cap; an admin can raise it.")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class HomeData:
    """What the App Home tab shows one person."""

    prefs: TurnSettings
    model_id: str
    days: list[date]
    usage: Metrics
    budget_line: str
    workspace: Report | None  # admins only


def home_view(data: HomeData, *, prefix: str, user: Namer, channel: Namer) -> dict[str, Any]:
    """The `home` view for views.publish."""
    blocks: list[Block] = [
        HeaderBlock(text="Your DeepSeek settings"),
        _fields(settings_fields(data.prefs, data.model_id)),
        _context(
            f"Change them with `{prefix}model pro|flash`, `{prefix}thinking on|off`, "
            f"`{prefix}effort low|high|max`. A channel's default applies where you have not chosen."
        ),
        DividerBlock(),
        HeaderBlock(text="Your usage, last 7 days"),
        _context(period_span(data.days)),
    ]
    if data.usage.requests:
        blocks.append(_fields([p for p in summary_lines(data.usage) if p[0] != "Saved by cache"]))
    else:
        blocks.append(_section("No requests yet. Mention me in a channel or send me a DM."))
    if data.budget_line:
        blocks.append(_context(data.budget_line))
    if data.workspace is not None:
        blocks.append(DividerBlock())
        ws = data.workspace
        blocks.append(HeaderBlock(text="Workspace, last 7 days (admins)"))
        blocks.append(_context(period_span(ws.days)))
        if ws.total.requests:
            blocks.append(_fields(summary_lines(ws.total)))
            blocks += _members("By model", ws.by_model, lambda m: f"`{m}`")
            blocks += _members("Top users", ws.by_user, user)
            blocks += _members("Top channels", ws.by_channel, channel)
        else:
            blocks.append(_section("No usage in the workspace in these days."))
        blocks.append(_context(f"More with `{prefix}cost 30d` and `{prefix}cost export`."))
    return {"type": "home", "blocks": to_dicts(blocks)}
