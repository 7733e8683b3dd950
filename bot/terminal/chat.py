"""`python -m bot chat`: a conversation with the engine in a terminal, without Slack.

One more surface, like a Slack handler: it turns typed lines into `Turn`s of the one engine
(`deps.engine.run`) and renders the engine's events; `/model`, `/cost` and the other
`/deepseek` subcommands go to the same `CommandService` the slash command uses. It needs only
DEEPSEEK_API_KEY; with REDIS_URL unset the store is the embedded one (nothing kept after exit).

Input: prompt_toolkit (history on the arrow keys) when stdin and stdout are terminals, else
lines read from stdin (same handling, for scripts and tests). Output: `RichView` when stdout is
a terminal, `PlainView` otherwise. Ctrl-C while an answer streams cancels the task consuming
the engine, which stores what arrived as interrupted; it never exits the REPL.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol

import structlog
from prompt_toolkit import PromptSession
from prompt_toolkit.history import InMemoryHistory
from redis.exceptions import RedisError
from rich.console import Console

from bot.commands.language import Help, parse
from bot.commands.service import TERMINAL_STYLE, Caller, CommandService, ExportFile, always_admin
from bot.config import ConfigError, Settings, load_settings
from bot.contracts.errors import Crashed, StoreDown
from bot.contracts.events import TurnDone, TurnFailed
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import SharedFile, ToolFailure
from bot.core.engine import Turn
from bot.core.prompt import thread_note
from bot.deps import Deps, build_deps
from bot.log import configure_logging
from bot.terminal.render import (
    FORMAT_NOTE,
    TERMINAL_HELP,
    Ask,
    Blank,
    NewThread,
    PlainView,
    Quit,
    RichView,
    RunCommand,
    ShowHelp,
    View,
    parse_input,
    unused_path,
)

log = structlog.get_logger(__name__)

TEAM, CHANNEL, USER = "local", "terminal", "local"
NO_FILES = "There are no shared files in the terminal; paste the text into the question instead."
# Log events that are expected in the terminal and would only clutter it.
_QUIET_EVENTS = frozenset({"embedded_store"})


def new_thread() -> ThreadRef:
    """A fresh conversation; the id has the shape of a Slack ts so it orders the same way."""
    return ThreadRef(TEAM, CHANNEL, f"{time.time():.6f}")


def terminal_turn(
    thread: ThreadRef, text: str, surface: TerminalSurface | None = None, *, today: date
) -> Turn:
    """The turn a typed question becomes: one local person, the terminal's formatting note,
    the date where the conversation starts."""
    return Turn(
        thread=thread,
        user=USER,
        text=text,
        channel_kind="terminal",
        thread_note=thread_note(today, "a terminal"),
        format_note=FORMAT_NOTE,
        surface=surface,
    )


class TerminalSurface:
    """The `Surface` tools see in the terminal: snippets go to the view; there are no files."""

    def __init__(self, view: View) -> None:
        self.view = view

    async def post_snippet(self, title: str, language: str, content: str) -> str:
        return self.view.snippet(title, language, content)

    async def read_file(self, file_id: str) -> tuple[SharedFile, str]:
        raise ToolFailure(NO_FILES)


class Reader(Protocol):
    owns_sigint: bool  # True: Ctrl-C while reading is the reader's (prompt_toolkit) to handle

    async def read(self) -> str | None:
        """The next line; None at end of input. May raise KeyboardInterrupt (Ctrl-C)."""
        ...


class PromptReader:
    """prompt_toolkit's asyncio prompt, with input history on the arrow keys (kept in memory:
    nothing is written to disk)."""

    owns_sigint = True

    def __init__(self) -> None:
        self.session: PromptSession[str] = PromptSession(history=InMemoryHistory())

    async def read(self) -> str | None:
        try:
            return await self.session.prompt_async("› ")
        except EOFError:  # Ctrl-D
            return None


class LineReader:
    """Lines of a stdin that is not a terminal (a pipe or a file). A daemon thread reads them,
    because a pipe or file cannot be awaited portably and a blocked read must not hold up exit."""

    owns_sigint = False

    def __init__(self, stream: BinaryIO) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: BinaryIO) -> None:
        try:
            for raw in stream:
                self._put(raw.decode("utf-8", errors="replace"))
        finally:
            self._put(None)

    def _put(self, line: str | None) -> None:
        # RuntimeError: the loop is closed because we are exiting; nobody wants the line.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)

    async def read(self) -> str | None:
        return await self._queue.get()


class Chat:
    """One terminal session: the current thread, the command service, Ctrl-C handling."""

    def __init__(self, deps: Deps, view: View) -> None:
        self.deps = deps
        self.view = view
        self.service = CommandService(
            deps.settings, deps.prefs, deps.ledger, always_admin, TERMINAL_STYLE
        )
        self.surface = TerminalSurface(view)
        self.thread = new_thread()
        self.interrupted = False  # Ctrl-C while waiting for piped input: leave
        self._answer: asyncio.Task[TurnDone | TurnFailed | None] | None = None
        self._waiting: asyncio.Future[str | None] | None = None

    # --- Ctrl-C ---------------------------------------------------------------------------

    def _on_sigint(self) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            # Once only: a second cancel would cut short the engine storing what arrived.
            if not answer.cancelling():
                answer.cancel()
        elif self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()

    def watch_sigint(self, on: bool) -> None:
        """Route SIGINT to `_on_sigint` (or give it back, e.g. to prompt_toolkit while it
        reads a line: it saves and restores the handler it finds)."""
        try:
            loop = asyncio.get_running_loop()
            if on:
                loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            else:
                loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows, thread)
            pass

    # --- turns and commands -----------------------------------------------------------------

    async def ask(self, text: str) -> TurnDone | TurnFailed | None:
        """Run one turn and render it. Returns its last event; None if it was stopped with
        Ctrl-C (the engine stored what arrived as interrupted) or crashed (logged)."""
        self.view.started()
        turn = terminal_turn(self.thread, text, self.surface, today=date.today())
        task = asyncio.create_task(self._consume(turn))
        self._answer = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # we are being shut down: stop the answer first
            task.cancel()
            await asyncio.wait({task})
            raise
        finally:
            self._answer = None
        if task.cancelled():
            self.view.stopped()
            return None
        exc = task.exception()
        if exc is not None:
            log.error("chat_turn_crashed", error=type(exc).__name__, exc_info=exc)
            self.view.error(Crashed.user_message)
            return None
        return task.result()

    async def _consume(self, turn: Turn) -> TurnDone | TurnFailed | None:
        last: TurnDone | TurnFailed | None = None
        async for event in self.deps.engine.run(turn):
            self.view.event(event)
            if isinstance(event, TurnDone | TurnFailed):
                last = event
        return last

    async def command(self, text: str, *, terminal_help: bool = False) -> None:
        """Run a `/deepseek` subcommand through the command service and show its reply."""
        command = parse(text)
        try:
            result = await self.service.run(Caller(TEAM, USER, CHANNEL), command)
        except (RedisError, OSError) as exc:
            log.error("command_store_failed", error=type(exc).__name__)
            self.view.error(StoreDown.user_message)
            return
        reply = result.text
        if result.file is not None:
            reply += f" Saved as `{save_export(result.file)}`."
        if terminal_help or isinstance(command, Help):
            reply += "\n" + TERMINAL_HELP
        self.view.message(reply)

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False when the person asked to leave."""
        match parse_input(line):
            case Quit():
                return False
            case Blank():
                pass
            case NewThread():
                self.thread = new_thread()
                self.view.note("New conversation.")
            case ShowHelp():
                await self.command("help", terminal_help=True)
            case RunCommand(text):
                await self.command(text)
            case Ask(text):
                await self.ask(text)
        return True

    # --- the loop ---------------------------------------------------------------------------

    async def _next_line(self, reader: Reader) -> str | None:
        if reader.owns_sigint:
            self.watch_sigint(False)
            try:
                return await reader.read()
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, like a shell
                return ""
            finally:
                self.watch_sigint(True)
        waiting = asyncio.ensure_future(reader.read())
        self._waiting = waiting
        try:
            await asyncio.wait({waiting})
        finally:
            self._waiting = None
            if not waiting.done():
                waiting.cancel()
        if waiting.cancelled():
            self.interrupted = True
            return None
        return waiting.result()

    async def repl(self, reader: Reader) -> int:
        """Read and act on lines until /quit, end of input (Ctrl-D) or, with piped input,
        Ctrl-C while idle. Returns the exit status."""
        self.watch_sigint(True)
        try:
            while True:
                line = await self._next_line(reader)
                if line is None or not await self.handle(line):
                    return 130 if self.interrupted else 0
        finally:
            self.watch_sigint(False)

    async def once(self, question: str) -> int:
        """Answer one question. 0 when answered, 1 when it failed, 130 when stopped."""
        self.watch_sigint(True)
        try:
            result = await self.ask(question)
        finally:
            self.watch_sigint(False)
        if isinstance(result, TurnDone):
            return 0
        return 1 if result is not None else 130

    async def banner(self) -> None:
        settings = self.deps.settings
        try:
            prefs = await self.deps.prefs.effective(TEAM, CHANNEL, USER)
        except (RedisError, OSError):
            self.view.error(StoreDown.user_message)
            return
        thinking = f"thinking on, effort {prefs.effort}" if prefs.thinking else "thinking off"
        store = "Redis" if settings.redis_url else "embedded store: nothing is kept after exit"
        self.view.note(
            f"DeepSeek in the terminal · {settings.model_id(prefs.model)} ({thinking}) · "
            f"{store}\n/help for commands, Ctrl-C stops an answer, Ctrl-D leaves."
        )


def save_export(export: ExportFile) -> Path:
    """Write a `cost export` CSV into the current directory, never over an existing file."""
    path = unused_path(Path.cwd() / export.filename)
    path.write_text(export.content, encoding="utf-8")
    return path


async def run_chat(settings: Settings, *, once: str | None = None) -> int:
    """Build the shared parts (no Slack) and run the REPL, or answer `once`."""
    deps = build_deps(settings)
    try:
        if once is not None:
            snippets = Path(tempfile.gettempdir()) / "deepseek-snippets"
            view: View = PlainView(sys.stdout, None, sys.stderr, snippet_dir=snippets)
            return await Chat(deps, view).once(once)
        if sys.stdout.isatty():
            view = RichView(Console(highlight=False))
        else:
            view = PlainView(sys.stdout, sys.stdout, sys.stdout)
        chat = Chat(deps, view)
        reader: Reader
        if sys.stdin.isatty() and sys.stdout.isatty():
            reader = PromptReader()
        else:
            reader = LineReader(sys.stdin.buffer)
        if sys.stdout.isatty():
            await chat.banner()
        return await chat.repl(reader)
    finally:
        await deps.aclose()


def configure_chat_logging(settings: Settings) -> None:
    """Logs go to stderr at WARNING (unless LOG_LEVEL is set), apart from the conversation."""
    if "log_level" not in settings.model_fields_set:
        settings = settings.model_copy(update={"log_level": "WARNING"})
    configure_logging(settings)
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[_drop_quiet, *processors])


def _drop_quiet(
    logger: object, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    if event_dict.get("event") in _QUIET_EVENTS:
        raise structlog.DropEvent
    return event_dict


def main(once: str | None = None) -> int:
    """Entry point of `python -m bot chat [--once QUESTION]` (`--once -` reads stdin)."""
    try:
        settings = load_settings()
        settings.require("deepseek_api_key")
    except ConfigError as exc:
        print(f"deepseek-slack: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_chat_logging(settings)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a non-UTF-8 locale must not crash an answer
            stream.reconfigure(errors="replace")
    if once == "-":
        once = sys.stdin.read()
    if once is not None and not once.strip():
        print("deepseek-slack: --once needs a question", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_chat(settings, once=once.strip() if once else once))
    except KeyboardInterrupt:  # Ctrl-C outside an answer, before the handlers were in place
        return 130
