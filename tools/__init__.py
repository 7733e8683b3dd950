"""The tool registry: the one list of tools the engine reads, in a fixed order."""

from __future__ import annotations

from typing import Any

from bot.config import Settings
from tools.base import Tool


def build_tools(settings: Settings) -> list[Tool[Any]]:
    """Enabled tools in a fixed order (tool schemas are part of the cached prompt prefix).
    A tool whose backend is not configured, or that is in TOOLS_DISABLED, is left out."""
    found: list[Tool[Any]] = []
    return [t for t in found if t.name not in settings.tools_disabled]
