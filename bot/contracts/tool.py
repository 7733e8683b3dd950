"""What a model tool is, and what it may use while it runs.

A tool declares a name, a description, a pydantic argument model (its JSON schema is what the
model sees) and an async function. The engine validates arguments, applies the timeout and the
output cap, and turns `ToolFailure` (or any other exception) into a result the model can read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from bot.config import Settings
from bot.contracts.thread import ThreadRef

A = TypeVar("A", bound=BaseModel)


class ToolFailure(Exception):
    """A failure the model should read (e.g. "the page returned 404"); the message is the
    result text. It must not contain secrets."""


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A file shared in the thread, as the surface knows it (Slack `files.info` shape)."""

    id: str
    name: str
    filetype: str
    size: int


class Surface(Protocol):
    """What a tool may ask of the place the conversation happens (Slack thread, terminal)."""

    async def post_snippet(self, title: str, language: str, content: str) -> str:
        """Post code as a snippet in the conversation; return a short confirmation."""
        ...

    async def read_file(self, file_id: str) -> tuple[SharedFile, str]:
        """Return a shared file and its text; raise ToolFailure if it is binary or too big."""
        ...


@dataclass(slots=True)
class ToolContext:
    thread: ThreadRef
    user: str
    settings: Settings
    http: httpx.AsyncClient
    surface: Surface | None = None
    files: list[SharedFile] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tool(Generic[A]):
    name: str  # [a-zA-Z0-9_-]{1,64}
    description: str
    args: type[A]
    run: Callable[[A, ToolContext], Awaitable[str]]
    label: Callable[[A], str]  # progress line: "Searching the web for “…”"
    timeout: float | None = None  # None: settings.tool_timeout

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools[]` entry. Deterministic, so the prompt prefix stays cacheable."""
        params = self.args.model_json_schema()
        params.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }
