"""Typed events: what the DeepSeek client yields, and what the engine yields to surfaces.

Surfaces (Slack, terminal) consume `EngineEvent`s and never see raw SSE or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one upstream call. `cache_hit + cache_miss == prompt`;
    `reasoning` is part of `completion` (billed as output)."""

    prompt: int = 0
    completion: int = 0
    cache_hit: int = 0
    cache_miss: int = 0
    reasoning: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cache_hit + other.cache_hit,
            self.cache_miss + other.cache_miss,
            self.reasoning + other.reasoning,
        )


# --- DeepSeek client stream -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call, after its streamed fragments were merged by index."""

    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it; kept byte-exact for history

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Finish:
    """Last event of a successful stream. `reason`: stop, length, tool_calls, content_filter,
    insufficient_system_resource. `usage` is None only if the gateway sent none."""

    reason: str
    usage: Usage | None


StreamEvent = ReasoningDelta | TextDelta | ToolCall | Finish


# --- Engine -> surface ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call_id: str
    name: str
    label: str  # short, human: "Searching the web for “redis streams”"


@dataclass(frozen=True, slots=True)
class ToolFinished:
    call_id: str
    name: str
    label: str
    ok: bool
    duration_ms: int


@dataclass(frozen=True, slots=True)
class TurnDone:
    """The turn finished and is stored. `text` is the whole visible answer."""

    text: str
    reasoning: str
    model: str
    thinking: bool
    usage: Usage
    cost_micros: int
    turn_id: str


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """The turn ended early. `partial` is what was already shown (may be empty); the stored
    history records the turn as interrupted with that text."""

    error: UpstreamError
    partial: str
    turn_id: str
    usage: Usage = field(default_factory=Usage)


EngineEvent = ReasoningDelta | TextDelta | ToolStarted | ToolFinished | TurnDone | TurnFailed
