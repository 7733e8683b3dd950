"""`python -m bot chat`: the terminal surface. The REPL and `--once` run in this process
(`run_chat`, what `main` runs once settings are loaded) with stdin, stdout and stderr of our
own (not terminals, so it reads lines and prints plain text) against the fake DeepSeek server;
two smoke tests run the real entry point as a process. Plus the pure parts of its rendering."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from redis.asyncio import Redis
from rich.console import Console
from structlog.typing import EventDict

from bot.commands.language import BadArgument, parse
from bot.config import Settings
from bot.contracts.errors import AuthError
from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.stream import ReasoningDelta, TextDelta, Usage
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import ToolFailure
from bot.core import prompt
from bot.core.engine import Turn
from bot.core.shared_files import snippet_filename
from bot.deps import build_deps
from bot.slack.format import FORMAT_NOTE as SLACK_FORMAT_NOTE
from bot.terminal.chat import TerminalSurface, run_chat, terminal_turn
from bot.terminal.render import (
    FORMAT_NOTE,
    STOPPED,
    Ask,
    Blank,
    Input,
    NewThread,
    PlainView,
    Quit,
    RichView,
    RunCommand,
    ShowHelp,
    parse_input,
    seconds,
    tool_line,
    usage_line,
)
from tests.conftest import API_KEY, BOT_TOKEN, make_settings
from tests.fakes.deepseek import FakeDeepSeek, error_reply, text_reply, tool_reply
from tools import build_tools

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
STARTED = r"\[Thread started \d{4}-\d{2}-\d{2} in a terminal\]"
USAGE_LINE = re.compile(
    r"^deepseek-v4-\w+ · [\d,]+ in( \([\d,]+ cached\))? · [\d,]+ out · \$\d+\.\d{4}$"
)


# --- the chat in this process ---------------------------------------------------------------


def chat_settings(fake: FakeDeepSeek, **overrides: Any) -> Settings:
    """Only what the terminal needs: a key and the gateway. No Slack, and no Redis URL: the
    embedded store, as `python -m bot chat` has with REDIS_URL unset."""
    values: dict[str, Any] = {
        "deepseek_api_key": API_KEY,
        "deepseek_base_url": fake.url,
        "deepseek_gateway": "deepseek",
        "deepseek_max_retries": 0,
        "redis_url": None,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Transcript(io.StringIO):
    """A stdout or stderr that is not a terminal and tells a waiting test when text arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._wrote = asyncio.Event()

    def write(self, text: str) -> int:
        self._wrote.set()
        return super().write(text)

    async def wait_for(self, text: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while text not in self.getvalue():
                self._wrote.clear()
                await self._wrote.wait()


@dataclass
class Session:
    code: int
    out: str
    err: str
    logs: list[EventDict]  # structlog's events (at every level)


async def chat(
    fake: FakeDeepSeek,
    lines: str,
    *,
    once: str | None = None,
    **overrides: Any,
) -> Session:
    """What `python -m bot chat [--once QUESTION]` does after loading its settings, with
    `lines` on stdin; stdout, stderr and the log events are collected."""
    out, err = Transcript(), Transcript()
    stdin = io.TextIOWrapper(io.BytesIO(lines.encode()), encoding="utf-8")
    with pytest.MonkeyPatch.context() as m, structlog.testing.capture_logs() as logs:
        m.setattr(sys, "stdin", stdin)
        m.setattr(sys, "stdout", out)
        m.setattr(sys, "stderr", err)
        code = await asyncio.wait_for(
            run_chat(chat_settings(fake, **overrides), once=once), TIMEOUT
        )
    return Session(code, out.getvalue(), err.getvalue(), logs)


def no_crash(session: Session) -> None:
    """Nothing on stderr (the REPL prints to stdout; logs are captured) and no exception
    logged (a crashed turn, a traceback)."""
    assert session.err == "", session.err
    crashes = [e for e in session.logs if "exc_info" in e or e["event"] == "chat_turn_crashed"]
    assert crashes == [], crashes


async def test_two_turns_remember_the_first(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("Paris."), text_reply("About 2.1 million people."))
    s = await chat(fake_deepseek, "What is the capital of France?\nHow many live there?\n")
    assert s.code == 0
    no_crash(s)
    assert s.out.index("Paris.") < s.out.index("About 2.1 million people.")
    first, second = fake_deepseek.requests
    assert first["messages"][0] == prompt.system_message(FORMAT_NOTE)
    assert second["messages"][: len(first["messages"])] == first["messages"]
    opening = second["messages"][1]["content"]
    assert re.fullmatch(STARTED + r"\n\nWhat is the capital of France\?", opening)
    assert [m["content"] for m in second["messages"] if m["role"] == "assistant"] == ["Paris."]
    assert second["messages"][-1] == {"role": "user", "content": "How many live there?"}


async def test_model_pro_changes_the_next_request(fake_deepseek: FakeDeepSeek) -> None:
    s = await chat(fake_deepseek, "hi\n/model pro\nhi again\n")
    assert s.code == 0
    no_crash(s)
    assert [r["model"] for r in fake_deepseek.requests] == ["deepseek-v4-flash", "deepseek-v4-pro"]
    assert "Model: pro (`deepseek-v4-pro`)" in s.out


@pytest.mark.parametrize("line", ["/model gpt5", "/effort 11", "/thinking maybe", "/usage forever"])
async def test_bad_arguments_read_as_the_slash_command(
    fake_deepseek: FakeDeepSeek, line: str
) -> None:
    expected = parse(line[1:])
    assert isinstance(expected, BadArgument)
    s = await chat(fake_deepseek, line + "\n")
    assert s.code == 0
    assert s.out.splitlines() == [expected.message]
    assert fake_deepseek.requests == []


async def test_thinking_off_changes_the_next_request(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("Thought about it.", reasoning="Hmm, let me see."))
    s = await chat(fake_deepseek, "hi\n/thinking off\nhi again\n")
    assert s.code == 0
    no_crash(s)
    first, second = fake_deepseek.requests
    assert first["thinking"] == {"type": "enabled"} and first["reasoning_effort"] == "high"
    assert second["thinking"] == {"type": "disabled"} and "reasoning_effort" not in second
    # Reasoning collapses to one line before the answer; its text is not printed.
    lines = s.out.splitlines()
    assert re.fullmatch(r"Thought for \d+ ms", lines[0]) and lines[1] == "Thought about it."
    assert "let me see" not in s.out


async def test_tool_call_shows_a_progress_line_then_the_answer(fake_deepseek: FakeDeepSeek) -> None:
    # No tools are configured: the model calls one anyway, the engine reports it as failed,
    # and the model answers from there.
    fake_deepseek.push(
        tool_reply([("lookup", {"q": "redis streams"})], text="Let me look."),
        text_reply("Redis streams are append-only logs."),
    )
    s = await chat(fake_deepseek, "what are redis streams?\n")
    assert s.code == 0
    no_crash(s)
    lines = s.out.splitlines()
    progress = [i for i, line in enumerate(lines) if line.startswith("✗ lookup (")]
    assert len(progress) == 1 and lines[progress[0]].endswith(", failed)")
    assert lines[progress[0] - 1] == "Let me look."
    assert lines[progress[0] + 1] == "Redis streams are append-only logs."
    assert len(fake_deepseek.requests) == 2


@pytest.fixture
async def searxng() -> AsyncIterator[tuple[str, list[str]]]:
    """A tiny SearXNG-shaped server (`/search?q=...&format=json`); records the queries."""
    queries: list[str] = []

    async def search(request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update(await request.post())  # type: ignore[arg-type]
        queries.append(str(params.get("q", "")))
        return web.json_response(
            {
                "query": params.get("q", ""),
                "results": [
                    {
                        "url": "https://redis.io/docs/data-types/streams/",
                        "title": "Redis Streams",
                        "content": "A Redis stream is an append-only log.",
                        "engine": "duckduckgo",
                        "score": 1.0,
                    }
                ],
                "answers": [],
                "infoboxes": [],
                "suggestions": [],
                "number_of_results": 1,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/search", search)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", queries
    await runner.cleanup()


def sample_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments filling a tool's required parameters with plausible values."""
    props = schema["function"]["parameters"].get("properties", {})
    samples = {"string": "redis streams", "integer": 3, "number": 3, "boolean": True}
    return {
        name: samples.get(props[name].get("type", "string"), "redis streams")
        for name in schema["function"]["parameters"].get("required", [])
    }


async def test_web_search_tool_progress_line(
    fake_deepseek: FakeDeepSeek, searxng: tuple[str, list[str]]
) -> None:
    url, queries = searxng
    tools = build_tools(make_settings(None, None, searxng_url=url))
    if not tools:
        pytest.skip("needs a web search tool in tools/ configured by SEARXNG_URL (tools work)")
    tool = tools[0]
    args = sample_args(tool.schema())
    label = tool.label(tool.args.model_validate(args))
    fake_deepseek.push(tool_reply([(tool.name, args)]), text_reply("Streams are logs."))
    s = await chat(fake_deepseek, "search it\n", searxng_url=url)
    assert s.code == 0
    no_crash(s)
    assert queries, "the tool did not reach the SearXNG server"
    lines = s.out.splitlines()
    line = next(x for x in lines if x.startswith("✓"))
    assert line.startswith(f"✓ {tool.name}: {label} (") or line.startswith(f"✓ {tool.name} (")
    assert lines.index(line) < lines.index("Streams are logs.")
    tool_result = fake_deepseek.requests[1]["messages"][-1]
    assert tool_result["role"] == "tool" and "append-only log" in tool_result["content"]


async def test_bad_key_prints_one_clear_line(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(error_reply(401, "Authentication Fails, Your api key is invalid"))
    s = await chat(fake_deepseek, "hello\nhello again\n")
    assert s.code == 0  # the REPL goes on after a failed turn
    no_crash(s)
    lines = s.out.splitlines()
    assert lines[0] == AuthError.user_message
    assert lines[1] == "Hello from fake DeepSeek."  # the next question is answered
    assert "Authentication Fails" not in s.out and API_KEY not in s.out
    # `python -m bot chat` logs at WARNING to stderr: nothing there may quote the upstream.
    shown = [e for e in s.logs if e["log_level"] not in ("debug", "info")]
    assert "Authentication Fails" not in repr(shown) and API_KEY not in repr(s.logs)


async def test_once_prints_exactly_the_answer(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(text_reply("The answer is 42.", reasoning="Six times seven."))
    s = await chat(fake_deepseek, "", once="What is 6 x 7?")
    assert s.code == 0
    assert s.out == "The answer is 42.\n"
    assert len(s.err.splitlines()) == 1 and USAGE_LINE.match(s.err.strip()), s.err
    opening = fake_deepseek.requests[0]["messages"][-1]["content"]
    assert re.fullmatch(STARTED + r"\n\nWhat is 6 x 7\?", opening)


async def test_once_failure_goes_to_stderr(fake_deepseek: FakeDeepSeek) -> None:
    fake_deepseek.push(error_reply(401))
    s = await chat(fake_deepseek, "", once="hello")
    assert (s.code, s.out, s.err) == (1, "", AuthError.user_message + "\n")


async def test_commands_new_help_quit(fake_deepseek: FakeDeepSeek) -> None:
    s = await chat(fake_deepseek, "first\n/new\nsecond\n/help\n/quit\nnever asked\n")
    assert s.code == 0
    no_crash(s)
    _, second = fake_deepseek.requests  # /quit left before "never asked"
    assert len(second["messages"]) == 2  # /new: a fresh thread, no history
    assert re.fullmatch(STARTED + r"\n\nsecond", second["messages"][1]["content"])
    assert "New conversation." in s.out
    assert "`/model pro|flash`" in s.out and "`/cost [today|7d|30d|month]`" in s.out  # admin
    assert "`/new`" in s.out and "`/quit`" in s.out


def csv_files(where: Path) -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in where.glob("deepseek-cost-local-*.csv")]


async def test_cost_and_usage_for_the_local_admin(
    fake_deepseek: FakeDeepSeek, tmp_cwd: Path
) -> None:
    s = await chat(fake_deepseek, "hi\n/usage\n/cost\n/cost export 7d\n/cost forever\n")
    assert s.code == 0
    no_crash(s)
    assert "**Cost, today**" in s.out and "deepseek-v4-flash" in s.out
    assert "is for workspace admins" not in s.out
    bad = parse("cost forever")
    assert isinstance(bad, BadArgument) and s.out.splitlines()[-1] == bad.message
    exports = csv_files(tmp_cwd)  # the current directory
    assert len(exports) == 1 and f"Saved as `{exports[0][0]}`." in s.out
    assert "deepseek-v4-flash" in exports[0][1]


async def test_ctrl_c_stops_the_answer_and_keeps_it(fake_deepseek: FakeDeepSeek) -> None:
    """A real SIGINT to this process while an answer streams: the chat's own handler (on the
    loop) stops the answer, the REPL goes on. The answer is held after its first words until
    the test is done, so the Ctrl-C comes mid-answer on any machine."""
    assert threading.current_thread() is threading.main_thread()  # where signals are handled
    release = asyncio.Event()
    fake_deepseek.push(
        text_reply("one two three four five six", pieces=6, hold=release, hold_after=2)
    )
    read_end, write_end = os.pipe()  # stdin stays open while the answer streams
    stdin = io.TextIOWrapper(os.fdopen(read_end, "rb"), encoding="utf-8")
    out = Transcript()
    running: asyncio.Task[int] | None = None
    try:
        with pytest.MonkeyPatch.context() as m, structlog.testing.capture_logs() as logs:
            m.setattr(sys, "stdin", stdin)
            m.setattr(sys, "stdout", out)
            m.setattr(sys, "stderr", out)
            running = asyncio.create_task(run_chat(chat_settings(fake_deepseek)))
            os.write(write_end, b"count slowly\n")
            await out.wait_for("one")
            # The chat's handler, not Python's KeyboardInterrupt (which would stop the tests).
            assert signal.getsignal(signal.SIGINT) not in (
                signal.default_int_handler,
                signal.SIG_DFL,
                signal.SIG_IGN,
            )
            signal.raise_signal(signal.SIGINT)
            await out.wait_for(STOPPED)
            os.write(write_end, b"go on\n")
            os.close(write_end)
            write_end = -1
            code = await asyncio.wait_for(running, TIMEOUT)
    finally:
        # `release` stays unset: the fake's shutdown ends the held handler (the chat has gone).
        if write_end >= 0:
            os.close(write_end)
        if running is not None and not running.done():
            running.cancel()
            await asyncio.wait({running})
        stdin.close()  # its reader thread has seen the end of input by now
    assert code == 0  # Ctrl-C stopped the answer, not the REPL
    no_crash(Session(code, "", "", logs))
    assert "Hello from fake DeepSeek." in out.getvalue().split(STOPPED, 1)[1]
    second = fake_deepseek.requests[1]["messages"]
    assert second[-3]["role"] == "user" and second[-3]["content"].endswith("\n\ncount slowly")
    kept = second[-2]
    assert kept["role"] == "assistant" and kept["content"].startswith("one")
    assert kept["content"].endswith(prompt.INTERRUPTED_NOTE.format(reason="stopped"))
    assert "six" not in kept["content"]


# --- the real entry point, as a process -------------------------------------------------------


def chat_env(fake: FakeDeepSeek, **extra: str) -> dict[str, str]:
    """Only what the terminal needs: a key and the gateway. No Slack, no REDIS_URL."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUTF8": "1",
        "DEEPSEEK_API_KEY": API_KEY,
        "DEEPSEEK_BASE_URL": fake.url,
        "DEEPSEEK_GATEWAY": "deepseek",
        "DEEPSEEK_MAX_RETRIES": "0",
        **extra,
    }


async def run_process(
    env: dict[str, str], cwd: Path, stdin: str, *args: str
) -> tuple[int, str, str]:
    """`python -m bot chat ARGS` with `stdin`; (exit status, stdout, stderr). An asyncio
    subprocess, so the fake server keeps serving on this test's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,  # a temp dir: no `.env` from the checkout
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_process_once_reads_the_question_from_stdin(
    fake_deepseek: FakeDeepSeek, tmp_path: Path
) -> None:
    """The whole entry point: argument parsing, settings from the environment, logging kept
    off stdout and quiet on stderr, `--once -` reading the question from stdin."""
    fake_deepseek.push(text_reply("The answer is 42.", reasoning="Six times seven."))
    code, out, err = await run_process(
        chat_env(fake_deepseek), tmp_path, "a question\non two lines\n", "--once", "-"
    )
    assert code == 0
    assert out == "The answer is 42.\n"
    assert len(err.splitlines()) == 1 and USAGE_LINE.match(err.strip()), err
    opening = fake_deepseek.requests[0]["messages"][-1]["content"]
    assert re.fullmatch(STARTED + r"\n\na question\non two lines", opening)


async def test_process_needs_only_the_deepseek_key(
    fake_deepseek: FakeDeepSeek, tmp_path: Path
) -> None:
    """Without the key: one line naming it, exit status 2, no secret from the environment."""
    env = chat_env(fake_deepseek, SLACK_BOT_TOKEN=BOT_TOKEN)
    del env["DEEPSEEK_API_KEY"]
    code, out, err = await run_process(env, tmp_path, "", "--once", "hi")
    assert (code, out) == (2, "")
    assert err == (
        "deepseek-slack: configuration error: DEEPSEEK_API_KEY is not set (see .env.example)\n"
    )
    assert fake_deepseek.requests == []


# --- the same request as Slack ---------------------------------------------------------------


async def test_terminal_and_slack_build_the_same_request(
    fake_deepseek: FakeDeepSeek, redis: Redis, redis_url: str
) -> None:
    """One engine, one prompt layout: a conversation asked from the terminal and from a Slack
    DM yields the same upstream requests, apart from each surface's formatting note (in the
    system prompt) and its thread note (where and when the thread started, in the opening).

    The Slack side is a `Turn` as bot/slack/turns.py builds one for a DM: Slack's formatting
    note and thread-note wording, its own thread, user and kind."""
    deps = build_deps(make_settings(None, fake_deepseek, redis_url=redis_url), redis=redis)
    day = date(2026, 11, 25)
    slack_format = SLACK_FORMAT_NOTE
    slack_started = prompt.thread_note(day, "a direct message")
    terminal = ThreadRef("local", "terminal", "1700000000.000001")
    slack = ThreadRef("T1", "D1", "1700000000.000002")
    questions = ["What is a Redis stream?", "And a consumer group?"]
    try:
        for surface in ("terminal", "slack"):
            fake_deepseek.push(text_reply("Streams are logs.", reasoning="Easy."))
            fake_deepseek.push(text_reply("Groups share a stream."))
            for q in questions:
                if surface == "terminal":
                    turn = terminal_turn(terminal, q, today=day)
                else:
                    turn = Turn(
                        slack,
                        "U1",
                        q,
                        channel_kind="im",
                        thread_note=slack_started,
                        format_note=slack_format,
                    )
                events = [e async for e in deps.engine.run(turn)]
                assert isinstance(events[-1], TurnDone)
    finally:
        await deps.aclose()

    def layout(body: dict[str, Any], format_note: str, started: str) -> dict[str, Any]:
        """The request without the surface's own notes (checked to be where they belong)."""
        system, opening, *rest = body["messages"]
        assert system == prompt.system_message(format_note)
        assert opening["content"].startswith(started + "\n\n")
        opening = {**opening, "content": opening["content"].removeprefix(started + "\n\n")}
        return {**body, "messages": [opening, *rest]}

    t1, t2, s1, s2 = fake_deepseek.requests
    for term, slk in ((t1, s1), (t2, s2)):
        assert layout(term, FORMAT_NOTE, prompt.thread_note(day, "a terminal")) == layout(
            slk, slack_format, slack_started
        )
    assert len(t2["messages"]) == 4 and t2["messages"][2]["reasoning_content"] == "Easy."


# --- the terminal surface and the views (no process) -------------------------------------------


async def test_surface_has_no_files_and_shows_snippets() -> None:
    out = io.StringIO()
    surface = TerminalSurface(PlainView(out, out, out))
    with pytest.raises(ToolFailure, match="no shared files"):
        await surface.read_file("F1")
    reply = await surface.post_snippet("Hello", "python", "print('hi')\n")
    assert "Hello" in reply
    assert out.getvalue() == "--- Hello (python) ---\nprint('hi')\n---\n"


def test_once_saves_snippets_to_files(tmp_path: Path) -> None:
    err = io.StringIO()
    view = PlainView(io.StringIO(), None, err, snippet_dir=tmp_path / "snips")
    first = view.snippet("Fib in Go", "go", "package main\n")
    second = view.snippet("Fib in Go", "go", "package other\n")
    paths = sorted((tmp_path / "snips").iterdir())
    assert [p.name for p in paths] == ["fib-in-go-2.go", "fib-in-go.go"]
    assert str(tmp_path / "snips" / "fib-in-go.go") in first
    assert str(tmp_path / "snips" / "fib-in-go-2.go") in second
    assert len(err.getvalue().splitlines()) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def a_turn(clock: Clock) -> list[tuple[EngineEvent, float]]:
    """A turn with reasoning (3.2 s), a tool round, and an answer; (event, clock step)."""
    done = TurnDone("Done.", "r", "deepseek-v4-pro", True, Usage(1200, 40, 1024, 176, 10), 321, "t")
    return [
        (ReasoningDelta("Let me "), 0.0),
        (ReasoningDelta("search."), 3.2),
        (ToolStarted("c1", "web_search", "Searching the web for “x”"), 0.0),
        (ToolFinished("c1", "web_search", "Searching the web for “x”", True, 1234), 0.0),
        (TextDelta("**Done**"), 0.0),
        (TextDelta("."), 0.0),
        (done, 0.0),
    ]


def test_plain_view_transcript() -> None:
    clock, out = Clock(), io.StringIO()
    view = PlainView(out, out, out, clock=clock)
    for event, step in a_turn(clock):
        clock.now += step
        view.event(event)
    assert out.getvalue().splitlines() == [
        "Thought for 3.2 s",
        "✓ web_search: Searching the web for “x” (1.2 s)",
        "**Done**.",
        "deepseek-v4-pro · 1,200 in (1,024 cached) · 40 out · $0.0003",
    ]


def test_plain_view_once_mode_keeps_stdout_to_the_answer() -> None:
    clock, out, err = Clock(), io.StringIO(), io.StringIO()
    view = PlainView(out, None, err, clock=clock)
    for event, _ in a_turn(clock):
        view.event(event)
    assert out.getvalue() == "**Done**.\n"
    assert err.getvalue() == "deepseek-v4-pro · 1,200 in (1,024 cached) · 40 out · $0.0003\n"


def test_plain_view_failure_and_stop() -> None:
    out = io.StringIO()
    view = PlainView(out, out, out)
    view.event(TextDelta("Half an ans"))
    view.event(TurnFailed(AuthError("HTTP 401"), "Half an ans", "t"))
    view.event(TextDelta("Another"))
    view.stopped()
    assert out.getvalue().splitlines() == [
        "Half an ans",
        AuthError.user_message,
        "Another",
        STOPPED,
    ]


def test_rich_view_renders_markdown_and_collapses_reasoning() -> None:
    clock, buf = Clock(), io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, height=24, color_system=None)
    view = RichView(console, clock=clock)
    for event, step in a_turn(clock):
        clock.now += step
        view.event(event)
    text = buf.getvalue()
    # What stays after the live region is gone: in order, and Markdown rendered (no `**`).
    kept = [
        "Thought for 3.2 s",
        "✓ web_search: Searching the web for “x” (1.2 s)",
        "Done.",
        "deepseek-v4-pro · 1,200 in (1,024 cached) · 40 out · $0.0003",
    ]
    positions = [text.rfind(k) for k in kept]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text
    assert "**Done**" not in text.splitlines()[-3:]


def test_rich_view_stop_keeps_the_partial_answer() -> None:
    buf = io.StringIO()
    view = RichView(Console(file=buf, force_terminal=True, width=80, color_system=None))
    view.event(TextDelta("Partial answer"))
    view.stopped()
    text = buf.getvalue()
    assert text.rfind("Partial answer") < text.rfind(STOPPED)


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", Blank()),
        ("   \n", Blank()),
        ("hello there\n", Ask("hello there")),
        ("/quit", Quit()),
        ("/exit", Quit()),
        ("/Q", Quit()),
        ("/new", NewThread()),
        ("/help", ShowHelp()),
        ("/?", ShowHelp()),
        ("/model pro", RunCommand("model pro")),
        ("  /Effort   MAX ", RunCommand("Effort   MAX")),
        ("/cost export 7d", RunCommand("cost export 7d")),
        ("/frobnicate", RunCommand("frobnicate")),
        ("/etc/hosts is what?", Ask("/etc/hosts is what?")),
        ("/ leading slash", Ask("/ leading slash")),
        ("what does /model do?", Ask("what does /model do?")),
    ],
)
def test_parse_input(line: str, expected: Input) -> None:
    assert parse_input(line) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0 ms"),
        (0.042, "42 ms"),
        (0.9994, "999 ms"),
        (3.21, "3.2 s"),
        (59.9, "59.9 s"),
        (75, "1 min 15 s"),
        (600, "10 min 0 s"),
    ],
)
def test_seconds(value: float, expected: str) -> None:
    assert seconds(value) == expected


@pytest.mark.parametrize(
    ("name", "label", "ok", "ms", "expected"),
    [
        (
            "web_search",
            "Searching the web for “x”",
            True,
            1234,
            "✓ web_search: Searching the web for “x” (1.2 s)",
        ),
        (
            "fetch",
            "Reading example.com",
            False,
            20000,
            "✗ fetch: Reading example.com (20.0 s, failed)",
        ),
        ("lookup", "lookup", False, 3, "✗ lookup (3 ms, failed)"),
        ("lookup", "", True, 0, "✓ lookup (0 ms)"),
    ],
)
def test_tool_line(name: str, label: str, ok: bool, ms: int, expected: str) -> None:
    assert tool_line(name, label, ok, ms) == expected


@pytest.mark.parametrize(
    ("usage", "cost", "expected"),
    [
        (Usage(0, 0), 0, "m · 0 in · 0 out · $0.0000"),
        (Usage(1200, 40, 1024, 176), 321, "m · 1,200 in (1,024 cached) · 40 out · $0.0003"),
        (Usage(2_000_000, 1000, 0, 2_000_000), 1_234_567, "m · 2,000,000 in · 1,000 out · $1.2346"),
    ],
)
def test_usage_line(usage: Usage, cost: int, expected: str) -> None:
    assert usage_line("m", usage, cost) == expected


@pytest.mark.parametrize(
    ("title", "language", "expected"),
    [
        ("Fibonacci in Go", "go", "fibonacci-in-go.go"),
        ("main.py", "Python", "main-py.py"),
        ("../../etc/passwd", "", "etc-passwd.txt"),
        ("", "rust", "snippet.rs"),
        ("Build", "sh; rm -rf /", "build.shrmrf"),
    ],
)
def test_snippet_filename(title: str, language: str, expected: str) -> None:
    assert snippet_filename(title, language) == expected


def test_format_note_is_stable_and_short() -> None:
    # Part of the cached system prompt: no dates, no per-session values.
    assert len(FORMAT_NOTE) < 400
    assert not re.search(r"\d{4}-\d{2}-\d{2}", FORMAT_NOTE)
