"""`/deepseek` argument parsing (pure table tests)."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model pro", SetPref("model", "pro")),
        ("model flash", SetPref("model", "flash")),
        ("  MODEL   Pro ", SetPref("model", "pro")),
        ("model default", SetPref("model", None)),
        ("thinking on", SetPref("thinking", "on")),
        ("thinking off", SetPref("thinking", "off")),
        ("thinking no", SetPref("thinking", "off")),
        ("thinking reset", SetPref("thinking", None)),
        ("effort low", SetPref("effort", "low")),
        ("effort high", SetPref("effort", "high")),
        ("effort max", SetPref("effort", "max")),
        ("settings", ShowSettings()),
        ("status", ShowSettings()),
        ("reset", ResetPrefs()),
        ("channel model pro", SetPref("model", "pro", "channel")),
        ("channel thinking off", SetPref("thinking", "off", "channel")),
        ("channel effort max", SetPref("effort", "max", "channel")),
        ("channel effort default", SetPref("effort", None, "channel")),
        ("usage", ShowUsage("today")),
        ("usage today", ShowUsage("today")),
        ("usage 7d", ShowUsage("7d")),
        ("usage 30d", ShowUsage("30d")),
        ("cost", ShowCost("today")),
        ("cost 7d", ShowCost("7d")),
        ("cost 30d", ShowCost("30d")),
        ("cost month", ShowCost("month")),
        ("cost export", ExportCost("30d")),
        ("cost export 7d", ExportCost("7d")),
        ("cost export month", ExportCost("month")),
        ("budget", ShowBudget()),
        ("budget user 5/day", SetBudget("user", 5_000_000)),
        ("budget user $2.50/day", SetBudget("user", 2_500_000)),
        ("budget user 0.5", SetBudget("user", 500_000)),
        ("budget user 5 / day", SetBudget("user", 5_000_000)),
        ("budget user 0.0000015/day", SetBudget("user", 2)),  # rounded half-up to micros
        ("budget workspace 200/month", SetBudget("workspace", 200_000_000)),
        ("budget workspace $1000", SetBudget("workspace", 1_000_000_000)),
        ("budget user off", SetBudget("user", None)),
        ("budget workspace none", SetBudget("workspace", None)),
        ("help", Help()),
        ("", Help()),
        ("   ", Help()),
        ("frobnicate now", Help(unknown="frobnicate")),
        ("Hello", Help(unknown="Hello")),
    ],
)
def test_parse(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model gpt5", "`gpt5` is not a choice here. Model is `pro` or `flash`"),
        ("model", "Model is `pro` or `flash`"),
        ("model pro please", "Model is `pro` or `flash`"),
        ("thinking maybe", "Thinking is `on` or `off`"),
        ("effort 11", "`11` is not a choice here. Effort is `low`, `high` or `max`"),
        ("effort medium", "Effort is `low`, `high` or `max`"),
        ("channel", "Channel defaults are set like `channel model pro`"),
        ("channel colour red", "Channel defaults are"),
        ("channel model gpt5", "like `channel model pro`"),
        ("usage 90d", "Usage covers `today`, `7d` or `30d`."),
        ("usage month", "Usage covers `today`, `7d` or `30d`."),
        ("cost yesterday", "A cost report covers `today`, `7d`, `30d` or `month`."),
        ("cost export today", "An export covers `7d`, `30d` or `month`."),
        ("budget user -5", "A budget is a positive amount of US dollars"),
        ("budget user five/day", "A budget is a positive amount of US dollars"),
        ("budget user 5/month", "A user budget is per day"),
        ("budget workspace 5/day", "A workspace budget is per month"),
        ("budget user 0/day", "must be more than $0"),
        ("budget user 2000000/day", "more than $1,000,000"),
        ("budget team 5", "Budgets are in US dollars, like `budget user 5/day`"),
        ("budget user", "Budgets are in US dollars, like `budget user 5/day`"),
    ],
)
def test_bad_arguments_get_one_line(text: str, needle: str) -> None:
    result = parse(text)
    assert isinstance(result, BadArgument)
    assert needle in result.message
    assert "\n" not in result.message


@pytest.mark.parametrize(
    ("text", "admin_only", "name"),
    [
        ("model pro", False, "model"),
        ("settings", False, ""),
        ("usage 7d", False, ""),
        ("help", False, ""),
        ("channel model pro", True, "channel"),
        ("cost", True, "cost"),
        ("cost export", True, "cost export"),
        ("budget", True, "budget"),
        ("budget user 5/day", True, "budget"),
    ],
)
def test_admin_only(text: str, admin_only: bool, name: str) -> None:
    command = parse(text)
    assert is_admin_only(command) is admin_only
    assert subcommand_name(command) == name


@pytest.mark.parametrize(
    ("prefix", "admin", "present", "absent"),
    [
        ("/deepseek ", False, "`/deepseek model pro|flash`", "`/deepseek cost [today"),
        ("/deepseek ", True, "`/deepseek cost [today|7d|30d|month]`", "Admins also have"),
        ("/", True, "`/budget user 5/day`", "/deepseek"),
        ("/", False, "`/usage [today|7d|30d]`", "/deepseek"),
    ],
)
def test_help_text(prefix: str, admin: bool, present: str, absent: str) -> None:
    text = help_text(prefix, admin=admin)
    assert present in text
    assert absent not in text
    assert len(text.splitlines()) <= 10


@pytest.mark.parametrize(
    ("text", "echoed"),
    [
        ("<!channel> hi", "I don't know `!channel`"),
        ("`rm` x", "I don't know `rm`"),
        ("model <@U123|bob>", "`@u123bob` is not a choice here"),
        ("x" * 80, "I don't know `" + "x" * 29 + "…`"),
    ],
)
def test_echoed_words_carry_no_markup(text: str, echoed: str) -> None:
    command = parse(text)
    message = command.message if isinstance(command, BadArgument) else ""
    if isinstance(command, Help):
        message = f"I don't know `{command.unknown}`"
    assert echoed in message


def test_help_names_where_the_export_goes() -> None:
    assert "daily rows in a file" in help_text("/", admin=True, export_to="a file")
    assert "daily rows in your DM" in help_text(admin=True)
