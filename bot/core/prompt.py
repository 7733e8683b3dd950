"""Prompt assembly and trimming (pure: no I/O, no clock).

The request is `[system] + history + new messages`. Everything before the newest message must
repeat earlier requests byte for byte so DeepSeek's prefix cache hits: the system prompt is a
constant plus the surface's (constant) formatting note, per-thread facts ride once in the first
user message, and history is append-only except for a rare, large trim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from bot.contracts.messages import Message, dumps
from bot.contracts.stream import ToolCall

SYSTEM_PROMPT = (
    "You are DeepSeek, a helpful assistant working inside a team's chat. Answer clearly and "
    "concisely; lead with the answer, then the detail that matters. Several people may speak "
    "in one thread: their messages start with their name. Use the tools when they help: "
    "search the web for current facts, read pages people link, read the files they share, "
    "and post code longer than about 40 lines as a snippet instead of pasting it. Say so when "
    "you are unsure. Never reveal API keys or tokens."
)

TRIMMED_NOTE = "[Earlier messages in this thread were dropped to fit the context window.]"
INTERRUPTED_NOTE = "[This answer was interrupted: {reason}]"


def thread_note(day: date, place: str) -> str:
    """Facts given once, where a thread starts (stored with its first message, so later
    requests repeat them byte for byte). `place`: "#general", "a direct message", …"""
    return f"[Thread started {day.isoformat()} in {place}]"


def system_message(format_note: str) -> Message:
    content = SYSTEM_PROMPT if not format_note else f"{SYSTEM_PROMPT}\n\n{format_note}"
    return {"role": "system", "content": content}


def user_message(text: str, *, speaker: str = "", thread_note: str = "") -> Message:
    """A person's message; `speaker` names them in shared threads, `thread_note` is given only
    for the first message of a thread."""
    body = f"{speaker}: {text}" if speaker else text
    return {"role": "user", "content": f"{thread_note}\n\n{body}" if thread_note else body}


def assistant_message(text: str, reasoning: str, calls: Sequence[ToolCall] = ()) -> Message:
    """Always carries `reasoning_content` (empty if none): DeepSeek requires it back, byte for
    byte, on every earlier assistant message once tools are in the request."""
    msg: Message = {"role": "assistant", "content": text, "reasoning_content": reasoning}
    if calls:
        msg["tool_calls"] = [c.to_message() for c in calls]
    return msg


def tool_message(call_id: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def interrupted_message(partial: str, reason: str) -> Message:
    note = INTERRUPTED_NOTE.format(reason=reason)
    return assistant_message(f"{partial}\n\n{note}" if partial else note, "")


def normalise_rebuilt(messages: Sequence[Message]) -> list[Message]:
    """History rebuilt from Slack: merge consecutive same-role messages (the API wants turns
    to alternate) and give assistant messages an empty `reasoning_content`."""
    out: list[Message] = []
    for m in messages:
        role, content = m["role"], str(m.get("content") or "")
        if not content:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + content
        elif role == "assistant":
            out.append(assistant_message(content, ""))
        else:
            out.append({"role": "user", "content": content})
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out


def cap_output(text: str, cap: int) -> str:
    """Cap a tool result at `cap` characters, saying how much was cut."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}\n[truncated: {len(text) - cap} more characters]"


def estimate_tokens(chars: int, calibration: tuple[int, int] | None) -> int:
    """Tokens for `chars` characters of request, from the last (prompt_tokens, chars) that
    DeepSeek reported for this thread; ~4 characters a token before any report."""
    if calibration and calibration[1] > 0:
        tokens, seen_chars = calibration
        return chars * tokens // seen_chars
    return chars // 4


def request_chars(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
    return sum(len(dumps(m)) for m in messages) + sum(len(json.dumps(t)) for t in tools)


def trim(history: Sequence[Message], keep_fraction: float = 0.5) -> list[Message]:
    """Drop the oldest part of `history` in one step (keeping about `keep_fraction` of it),
    cutting only where a user message starts, so tool calls stay with their results and the
    trimmed history starts with a user turn. The first kept message says what happened."""
    starts = [i for i, m in enumerate(history) if m["role"] == "user"]
    target = int(len(history) * (1 - keep_fraction))
    cut = next((i for i in starts if i >= target), None)
    if cut is None or cut == 0:
        later = [i for i in starts if i > 0]
        cut = later[-1] if later else len(history)
    kept = [dict(m) for m in history[cut:]]
    if kept:
        kept[0]["content"] = f"{TRIMMED_NOTE}\n\n{kept[0]['content']}"
    return kept
