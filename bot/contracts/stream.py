"""What one streamed model call yields: text and reasoning deltas, tool calls, the finish and
its token usage. The DeepSeek client produces these; the engine and the prompt consume them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
