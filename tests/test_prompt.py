"""Pure prompt assembly and trimming."""

from __future__ import annotations

from typing import Any

import pytest

from bot.contracts.stream import ToolCall
from bot.core import prompt


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str, calls: tuple[ToolCall, ...] = ()) -> dict[str, Any]:
    return prompt.assistant_message(text, "", calls)


CALL = ToolCall("c1", "web_search", '{"query": "x"}')


@pytest.mark.parametrize(
    ("history", "kept_first"),
    [
        ([u("1"), a("1"), u("2"), a("2"), u("3"), a("3"), u("4"), a("4")], "3"),
        # never cut between a tool call and its result
        ([u("1"), a("", (CALL,)), prompt.tool_message("c1", "r"), a("1"), u("2"), a("2")], "2"),
        ([u("only"), a("one")], None),
    ],
)
def test_trim_cuts_at_user_turns(history: list[dict[str, Any]], kept_first: str | None) -> None:
    kept = prompt.trim(history)
    if kept_first is None:
        assert kept == []
        return
    assert kept[0]["role"] == "user"
    assert kept[0]["content"] == f"{prompt.TRIMMED_NOTE}\n\n{kept_first}"
    assert kept[1:] == history[len(history) - len(kept) + 1 :]


@pytest.mark.parametrize(
    ("rebuilt", "roles"),
    [
        ([u("a"), u("b"), a("c")], ["user", "assistant"]),
        ([a("bot first"), u("q")], ["user"]),
        ([u("a"), {"role": "assistant", "content": ""}, u("b")], ["user"]),
    ],
)
def test_normalise_rebuilt_alternates(rebuilt: list[dict[str, Any]], roles: list[str]) -> None:
    out = prompt.normalise_rebuilt(rebuilt)
    assert [m["role"] for m in out] == roles
    assert all(m["reasoning_content"] == "" for m in out if m["role"] == "assistant")


@pytest.mark.parametrize(
    ("chars", "calibration", "tokens"),
    [(4000, None, 1000), (4000, (500, 1000), 2000), (0, (10, 10), 0)],
)
def test_estimate_tokens(chars: int, calibration: tuple[int, int] | None, tokens: int) -> None:
    assert prompt.estimate_tokens(chars, calibration) == tokens


@pytest.mark.parametrize(
    ("kw", "content"),
    [
        ({}, "hi"),
        ({"speaker": "Alice"}, "Alice: hi"),
        ({"speaker": "Alice", "thread_note": "[note]"}, "[note]\n\nAlice: hi"),
    ],
)
def test_user_message(kw: dict[str, str], content: str) -> None:
    assert prompt.user_message("hi", **kw) == {"role": "user", "content": content}


def test_system_prompt_is_stable_per_surface() -> None:
    assert prompt.system_message("note") == prompt.system_message("note")
    assert prompt.system_message("")["content"] == prompt.SYSTEM_PROMPT


def test_cap_output() -> None:
    assert prompt.cap_output("abc", 5) == "abc"
    assert prompt.cap_output("abcdef", 2) == "ab\n[truncated: 4 more characters]"
