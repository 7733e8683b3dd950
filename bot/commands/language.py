"""The `/deepseek` command language (pure: text in, a typed command out).

`parse` never raises: anything it does not recognise is `Help` (a short usage text, never an
error), and a known subcommand with a bad argument is `BadArgument` with one line saying what
is accepted. Messages name subcommands without a prefix so every surface can show them (the
Slack command is `/deepseek model pro`, the terminal's is `/model pro`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bot.deepseek.pricing import dollars_to_micros
from bot.store.prefs import VALUES, PrefName, Scope
from bot.usage.budgets import BudgetScope
from bot.usage.reports import Period

USAGE_PERIODS: tuple[Period, ...] = ("today", "7d", "30d")
COST_PERIODS: tuple[Period, ...] = ("today", "7d", "30d", "month")
EXPORT_PERIODS: tuple[Period, ...] = ("7d", "30d", "month")
MAX_BUDGET_MICROS = dollars_to_micros(Decimal(1_000_000))  # anything above is a typo
RESET_WORDS = ("default", "reset")
OFF_WORDS = ("off", "none")


@dataclass(frozen=True, slots=True)
class SetPref:
    """Set one setting; `value` None goes back to the next layer (channel, then default)."""

    name: PrefName
    value: str | None
    scope: Scope = "user"


@dataclass(frozen=True, slots=True)
class ResetPrefs:
    """Forget all of the caller's own settings."""


@dataclass(frozen=True, slots=True)
class ShowSettings:
    pass


@dataclass(frozen=True, slots=True)
class ShowUsage:
    period: Period = "today"


@dataclass(frozen=True, slots=True)
class ShowCost:
    period: Period = "today"


@dataclass(frozen=True, slots=True)
class ExportCost:
    period: Period = "30d"


@dataclass(frozen=True, slots=True)
class SetBudget:
    """`micros` None removes the cap."""

    scope: BudgetScope
    micros: int | None


@dataclass(frozen=True, slots=True)
class ShowBudget:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    unknown: str = ""  # the subcommand that was not understood, if any


@dataclass(frozen=True, slots=True)
class BadArgument:
    message: str  # one line, shown as is


Command = (
    SetPref
    | ResetPrefs
    | ShowSettings
    | ShowUsage
    | ShowCost
    | ExportCost
    | SetBudget
    | ShowBudget
    | Help
    | BadArgument
)


def is_admin_only(command: Command) -> bool:
    if isinstance(command, SetPref):
        return command.scope == "channel"
    return isinstance(command, ShowCost | ExportCost | SetBudget | ShowBudget)


def subcommand_name(command: Command) -> str:
    """How the caller refers to an admin-only command ("cost", "channel", ...)."""
    if isinstance(command, SetPref):
        return "channel" if command.scope == "channel" else command.name
    if isinstance(command, ExportCost):
        return "cost export"
    if isinstance(command, SetBudget | ShowBudget):
        return "budget"
    if isinstance(command, ShowCost):
        return "cost"
    return ""


def shown(word: str, limit: int = 30) -> str:
    """A word the caller typed, safe to echo inside `code`: no markup or control characters
    (Slack's `<!channel>`, backticks), at most `limit` characters."""
    clean = re.sub(r"[<>&`*_~|]", "", word)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _or_list(words: tuple[str, ...]) -> str:
    quoted = [f"`{w}`" for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


_PREF_HINTS: dict[PrefName, str] = {
    "model": "Model is {choices} (or `default`), like `{prefix}model pro`.",
    "thinking": "Thinking is {choices} (or `default`), like `{prefix}thinking off`.",
    "effort": "Effort is {choices} (or `default`), like `{prefix}effort high`.",
}


def _pref(name: PrefName, args: list[str], scope: Scope) -> Command:
    prefix = "channel " if scope == "channel" else ""
    hint = _PREF_HINTS[name].format(choices=_or_list(VALUES[name]), prefix=prefix)
    if len(args) != 1:
        return BadArgument(hint)
    value = args[0]
    if value in RESET_WORDS:
        return SetPref(name, None, scope)
    if name == "thinking":
        value = {"true": "on", "yes": "on", "false": "off", "no": "off"}.get(value, value)
    if value not in VALUES[name]:
        return BadArgument(f"`{shown(args[0])}` is not a choice here. {hint}")
    return SetPref(name, value, scope)


def _period(
    args: list[str], allowed: tuple[Period, ...], default: Period, what: str
) -> Period | BadArgument:
    if not args:
        return default
    if len(args) == 1 and args[0] in allowed:
        return args[0]
    return BadArgument(f"{what} covers {_or_list(allowed)}.")


_AMOUNT = re.compile(r"^\$?(?P<amount>[0-9]+(?:\.[0-9]+)?)\$?(?:/(?P<per>[a-z]+))?$")
_BUDGET_HINT = (
    "Budgets are in US dollars, like `budget user 5/day` or `budget workspace 200/month`."
)
_PERIOD_OF: dict[BudgetScope, str] = {"user": "day", "workspace": "month"}
_EXAMPLE: dict[BudgetScope, str] = {
    "user": "budget user 5/day",
    "workspace": "budget workspace 200/month",
}


def _budget(args: list[str]) -> Command:
    if not args:
        return ShowBudget()
    if args[0] not in ("user", "workspace") or len(args) == 1:
        return BadArgument(_BUDGET_HINT)
    scope: BudgetScope = "user" if args[0] == "user" else "workspace"
    rest = "".join(args[1:])  # "5 / day" -> "5/day"
    per = _PERIOD_OF[scope]
    if rest in OFF_WORDS:
        return SetBudget(scope, None)
    match = _AMOUNT.match(rest)
    if match is None:
        return BadArgument(
            f"A budget is a positive amount of US dollars, like `{_EXAMPLE[scope]}` (or `off`)."
        )
    if match["per"] not in (None, per):
        return BadArgument(f"A {scope} budget is per {per}, like `{_EXAMPLE[scope]}`.")
    try:
        micros = dollars_to_micros(Decimal(match["amount"]))
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        micros = 0
    if micros <= 0:
        return BadArgument(f"A budget must be more than $0; `budget {scope} off` removes the cap.")
    if micros > MAX_BUDGET_MICROS:
        return BadArgument("That budget is more than $1,000,000; is there a typo?")
    return SetBudget(scope, micros)


def _cost(args: list[str]) -> Command:
    if args and args[0] == "export":
        export = _period(args[1:], EXPORT_PERIODS, "30d", "An export")
        return export if isinstance(export, BadArgument) else ExportCost(export)
    period = _period(args, COST_PERIODS, "today", "A cost report")
    return period if isinstance(period, BadArgument) else ShowCost(period)


def _channel(args: list[str]) -> Command:
    if args and args[0] in VALUES:
        name: PrefName = args[0]
        return _pref(name, args[1:], "channel")
    return BadArgument(
        "Channel defaults are set like `channel model pro`, `channel thinking off` or "
        "`channel effort max`."
    )


def parse(text: str) -> Command:
    """Parse the text after `/deepseek` (case and extra spaces do not matter)."""
    words = text.strip().lower().split()
    if not words:
        return Help()
    head, args = words[0], words[1:]
    if head in VALUES:
        name: PrefName = head
        return _pref(name, args, "user")
    if head in ("settings", "status"):
        return ShowSettings()
    if head == "reset":
        return ResetPrefs()
    if head == "usage":
        period = _period(args, USAGE_PERIODS, "today", "Usage")
        return period if isinstance(period, BadArgument) else ShowUsage(period)
    if head == "cost":
        return _cost(args)
    if head == "channel":
        return _channel(args)
    if head in ("budget", "budgets"):
        return _budget(args)
    if head in ("help", "?"):
        return Help()
    return Help(unknown=shown(text.strip().split()[0]))


def help_text(
    prefix: str = "/deepseek ", *, admin: bool = False, export_to: str = "your DM"
) -> str:
    """Short usage text (standard markdown that also reads as Slack mrkdwn). `export_to`:
    where `cost export` puts the CSV on this surface."""
    lines = [
        f"- `{prefix}model pro|flash`: the model that answers you",
        f"- `{prefix}thinking on|off`, `{prefix}effort low|high|max`: how hard it thinks",
        f"- `{prefix}settings`: your settings here and where each comes from",
        f"- `{prefix}usage [today|7d|30d]`: your requests, tokens and cost",
        f"- `{prefix}reset`: forget your own settings",
    ]
    if admin:
        lines += [
            f"- `{prefix}channel model pro` (or `thinking`, `effort`): this channel's defaults",
            f"- `{prefix}cost [today|7d|30d|month]`: workspace spend",
            f"- `{prefix}cost export [7d|30d|month]`: a CSV of daily rows in {export_to}",
            f"- `{prefix}budget user 5/day`, `{prefix}budget workspace 200/month`: spending caps"
            " in US dollars (`off` removes one)",
        ]
    else:
        lines.append(f"- Admins also have `{prefix}channel`, `cost` and `budget`.")
    return "\n".join(lines)
