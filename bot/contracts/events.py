"""What the engine yields to a surface while a turn runs (Slack and the terminal render these;
neither sees raw SSE or HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.contracts.errors import UpstreamError
from bot.contracts.stream import ReasoningDelta, TextDelta, Usage


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
