"""Which conversation a turn belongs to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """One conversation: a Slack thread (or a terminal session standing in for one)."""

    team: str
    channel: str
    thread_ts: str

    @property
    def tag(self) -> str:
        return f"{{{self.team}:{self.channel}:{self.thread_ts}}}"
