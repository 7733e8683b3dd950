"""How the terminal surface reads a line and shows a turn (no event loop, no engine).

Pure parts: `parse_input` (a typed line), the one-line formats (`thought_line`, `tool_line`,
`usage_line`) and `FORMAT_NOTE`. Views turn engine events into output on streams they are
given, so tests drive them with `io.StringIO`:

- `PlainView`: text as it arrives, one line per finished tool, "Thought for 3.2 s" instead of
  the reasoning. Used when stdout is not a terminal, and for `--once` (answer on stdout, usage
  and errors on stderr, nothing else).
- `RichView`: rich's `Live` region while a turn streams (reasoning dimmed, a spinner per running
  tool, the answer rendered as Markdown, showing the tail that fits the screen); pieces that are
  complete are printed above it for good, and the region disappears when the turn ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.segment import Segment
from rich.spinner import Spinner
from rich.syntax import Syntax
from rich.text import Text

from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.stream import ReasoningDelta, TextDelta, Usage
from bot.core.shared_files import snippet_filename
from bot.deepseek.pricing import format_usd

# Part of the cached system prompt: keep it a constant.
FORMAT_NOTE = (
    "This conversation happens in a terminal, not in Slack: one person, no shared files. "
    "Write standard Markdown (fenced code blocks with a language, short lists); avoid wide "
    "tables and Slack syntax such as <@user> mentions or :emoji: codes."
)


TERMINAL_HELP = (
    "- `/new`: start a fresh conversation\n"
    "- `/help`: this text\n"
    "- `/quit` (or Ctrl-D): leave; Ctrl-C stops an answer while it streams"
)
STOPPED = "[stopped]"

# --- input ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blank:
    pass


@dataclass(frozen=True, slots=True)
class Ask:
    text: str


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class NewThread:
    pass


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


@dataclass(frozen=True, slots=True)
class RunCommand:
    """A `/deepseek` subcommand, without the slash ("model pro"), for the command service."""

    text: str


Input = Blank | Ask | Quit | NewThread | ShowHelp | RunCommand

# A command is a slash and a word, then a space or the end: "/etc/hosts?" is a question.
_COMMAND = re.compile(r"/([A-Za-z?][A-Za-z0-9_-]*)(?:\s+.*)?", re.DOTALL)


def parse_input(line: str) -> Input:
    """Classify one line typed at the prompt. Terminal-only commands are recognised here;
    every other slash command goes to the command service unparsed (it owns the language)."""
    text = line.strip()
    if not text:
        return Blank()
    match = _COMMAND.fullmatch(text)
    if match is None:
        return Ask(text)
    head = match[1].lower()
    if head in ("quit", "exit", "q"):
        return Quit()
    if head == "new":
        return NewThread()
    if head in ("help", "?"):
        return ShowHelp()
    return RunCommand(text[1:])


# --- one-line formats ----------------------------------------------------------------------


def seconds(value: float) -> str:
    """`0.042` -> `42 ms`, `3.21` -> `3.2 s`, `75` -> `1 min 15 s`."""
    if value < 1:
        return f"{round(value * 1000)} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def thought_line(elapsed_s: float) -> str:
    return f"Thought for {seconds(elapsed_s)}"


def tool_line(name: str, label: str, ok: bool, duration_ms: int) -> str:
    """One progress line for a finished tool call: outcome mark, tool, argument summary (the
    engine's label), duration, and "failed" when the tool's result is an error."""
    what = name if label in ("", name) else f"{name}: {label}"
    took = seconds(duration_ms / 1000)
    return f"✓ {what} ({took})" if ok else f"✗ {what} ({took}, failed)"


def running_line(name: str, label: str) -> str:
    return name if label in ("", name) else f"{name}: {label}"


def usage_line(model: str, usage: Usage, cost_micros: int) -> str:
    """`deepseek-v4-flash · 1,234 in (1,024 cached) · 56 out · $0.0003`."""
    cached = f" ({usage.cache_hit:,} cached)" if usage.cache_hit else ""
    return (
        f"{model} · {usage.prompt:,} in{cached} · {usage.completion:,} out · "
        f"{format_usd(cost_micros)}"
    )


# --- views ---------------------------------------------------------------------------------


class View(Protocol):
    """What the REPL asks of its output. `event` is called for each engine event of a turn
    (the last is TurnDone or TurnFailed); `stopped` instead of that last event when the person
    pressed Ctrl-C."""

    def started(self) -> None:
        """A question was sent; its events follow."""
        ...

    def event(self, ev: EngineEvent) -> None: ...

    def stopped(self) -> None: ...

    def message(self, markdown: str) -> None:
        """A command's reply (standard markdown)."""
        ...

    def error(self, text: str) -> None:
        """One clear line, never a traceback."""
        ...

    def note(self, text: str) -> None:
        """Something about the session (banner, "new conversation")."""
        ...

    def snippet(self, title: str, language: str, content: str) -> str:
        """Show (or save) a snippet a tool posted; return a confirmation for the model."""
        ...


class PlainView:
    """Plain text on streams. `answer` gets the answer's text as it arrives; `chrome` gets
    thought and tool lines (None: not shown); `status` gets the usage line, errors and notes.
    The REPL passes stdout for all three; `--once` passes stdout, None and stderr."""

    def __init__(
        self,
        answer: TextIO,
        chrome: TextIO | None,
        status: TextIO,
        *,
        snippet_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.answer, self.chrome, self.status = answer, chrome, status
        self.snippet_dir = snippet_dir  # None: snippets are printed with the conversation
        self.clock = clock
        self._thinking_since: float | None = None
        self._open_line = False  # answer text written without its final newline

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()

    def _end_line(self) -> None:
        if self._open_line:
            self._write(self.answer, "\n")
            self._open_line = False

    def started(self) -> None:
        pass

    def _collapse(self) -> None:
        if self._thinking_since is not None:
            elapsed = self.clock() - self._thinking_since
            self._thinking_since = None
            if self.chrome is not None:
                self._write(self.chrome, thought_line(elapsed) + "\n")

    def event(self, ev: EngineEvent) -> None:
        if isinstance(ev, ReasoningDelta):
            if self._thinking_since is None:
                self._end_line()
                self._thinking_since = self.clock()
        elif isinstance(ev, TextDelta):
            self._collapse()
            if ev.text:
                self._write(self.answer, ev.text)
                self._open_line = not ev.text.endswith("\n")
        elif isinstance(ev, ToolStarted):
            self._collapse()
            self._end_line()
        elif isinstance(ev, ToolFinished):
            if self.chrome is not None:
                line = tool_line(ev.name, ev.label, ev.ok, ev.duration_ms)
                self._write(self.chrome, line + "\n")
        elif isinstance(ev, TurnDone):
            self._collapse()
            self._end_line()
            self._write(self.status, usage_line(ev.model, ev.usage, ev.cost_micros) + "\n")
        elif isinstance(ev, TurnFailed):
            self._collapse()
            self._end_line()
            self.error(ev.error.user_message)

    def stopped(self) -> None:
        self._collapse()
        self._end_line()
        self._write(self.status, STOPPED + "\n")

    def message(self, markdown: str) -> None:
        self._write(self.answer, markdown.rstrip("\n") + "\n")

    def error(self, text: str) -> None:
        self._write(self.status, text + "\n")

    def note(self, text: str) -> None:
        self._write(self.status, text + "\n")

    def snippet(self, title: str, language: str, content: str) -> str:
        if self.snippet_dir is None:
            self._end_line()
            body = content.rstrip("\n")
            self._write(self.answer, f"--- {title} ({language or 'text'}) ---\n{body}\n---\n")
            return f"Shown the snippet “{title}” in the terminal."
        self.snippet_dir.mkdir(parents=True, exist_ok=True)
        path = unused_path(self.snippet_dir / snippet_filename(title, language))
        path.write_text(content, encoding="utf-8")
        self._write(self.status, f"Snippet “{title}” saved to {path}\n")
        return f"Saved the snippet “{title}” to {path} (the terminal has no snippets)."


def unused_path(path: Path) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext`, ... if it exists: never overwrite a file."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


@dataclass(frozen=True, slots=True)
class _Live:
    """What the live region shows; replaced whole on each event, because rich's refresh
    thread reads it while the event loop writes it."""

    reasoning: str = ""
    tools: tuple[tuple[str, str, str], ...] = ()  # (call_id, name, label) of running calls
    answer: str = ""
    closing: bool = False  # the turn is over: the region's last refresh shows nothing


class _Tail:
    """Renders the live state and keeps only the last lines that fit the screen, so the live
    region never scrolls (a scrolled live region leaves copies behind)."""

    def __init__(self, view: RichView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        state = self.view._state
        if state.closing:
            return
        parts: list[RenderableType] = []
        if state.reasoning:
            tail = state.reasoning.strip().splitlines()[-6:]
            parts.append(Text("Thinking…\n" + "\n".join(tail), style="dim italic"))
        parts += [
            Spinner("dots", Text(running_line(n, lb), style="dim")) for _, n, lb in state.tools
        ]
        if state.answer:
            parts.append(Markdown(state.answer))
        if not parts:
            parts.append(Spinner("dots", Text("Waiting for DeepSeek…", style="dim")))
        room = max(3, console.height - 1)
        lines = console.render_lines(Group(*parts), options.update(height=None), pad=False)
        for line in lines[-room:]:
            yield from line
            yield Segment.line()


class RichView:
    """A terminal view with rich (Markdown, colours, a live region while streaming)."""

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self._state = _Live()
        self._live: Live | None = None
        self._thinking_since: float | None = None

    def started(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._live is None:
            self._live = Live(
                _Tail(self),
                console=self.console,
                refresh_per_second=12,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def _collapse(self) -> None:
        if self._thinking_since is not None:
            elapsed = self.clock() - self._thinking_since
            self._thinking_since = None
            self._state = replace(self._state, reasoning="")
            self.console.print(Text(thought_line(elapsed), style="dim"))

    def _flush_answer(self) -> None:
        """Print the answer so far for good (above the live region) and clear it there."""
        if self._state.answer:
            text = self._state.answer
            self._state = replace(self._state, answer="")
            self.console.print(Markdown(text))

    def _finish(self) -> None:
        """End the turn's live region, then print for good what it was showing."""
        answer = self._state.answer
        self._state = _Live(closing=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._state = _Live()
        self._collapse()
        if answer:
            self.console.print(Markdown(answer))

    def event(self, ev: EngineEvent) -> None:
        self._start()
        if isinstance(ev, ReasoningDelta):
            if self._thinking_since is None:
                self._flush_answer()
                self._thinking_since = self.clock()
            self._state = replace(self._state, reasoning=self._state.reasoning + ev.text)
        elif isinstance(ev, TextDelta):
            self._collapse()
            self._state = replace(self._state, answer=self._state.answer + ev.text)
        elif isinstance(ev, ToolStarted):
            self._collapse()
            self._flush_answer()
            tools = (*self._state.tools, (ev.call_id, ev.name, ev.label))
            self._state = replace(self._state, tools=tools)
        elif isinstance(ev, ToolFinished):
            tools = tuple(t for t in self._state.tools if t[0] != ev.call_id)
            self._state = replace(self._state, tools=tools)
            line = tool_line(ev.name, ev.label, ev.ok, ev.duration_ms)
            self.console.print(Text(line, style="green" if ev.ok else "yellow"))
        elif isinstance(ev, TurnDone):
            self._finish()
            self.console.print(
                Text(usage_line(ev.model, ev.usage, ev.cost_micros), style="dim"), end="\n\n"
            )
        elif isinstance(ev, TurnFailed):
            self._finish()
            self.error(ev.error.user_message)

    def stopped(self) -> None:
        self._finish()
        self.console.print(Text(STOPPED, style="yellow"), end="\n\n")

    def message(self, markdown: str) -> None:
        self.console.print(Markdown(markdown))
        self.console.print()

    def error(self, text: str) -> None:
        self.console.print(Text(text, style="bold red"), end="\n\n")

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def snippet(self, title: str, language: str, content: str) -> str:
        self._flush_answer()
        code = Syntax(content.rstrip("\n"), language or "text", theme="ansi_dark")
        self.console.print(Panel(code, title=title, title_align="left"))
        return f"Shown the snippet “{title}” in the terminal."
