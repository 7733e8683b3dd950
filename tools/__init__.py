"""The tool registry: the one list of tools the engine reads, in a fixed order."""

from __future__ import annotations

from typing import Any

from bot.config import Settings
from bot.contracts.tool import Tool
from tools.fetch_url import fetch_url_tool
from tools.snippets import post_snippet_tool, read_snippet_tool
from tools.web_search import web_search_tool


def build_tools(settings: Settings) -> list[Tool[Any]]:
    """Enabled tools in a fixed order (tool schemas are part of the cached prompt prefix).
    A tool whose backend is not configured, or that is in TOOLS_DISABLED, is left out."""
    # Never reorder: the schemas, in this order, are part of the cached prompt prefix.
    candidates: list[Tool[Any] | None] = [
        web_search_tool(settings),  # None when no search backend is configured
        fetch_url_tool(),
        read_snippet_tool(),
        post_snippet_tool(),
    ]
    return [t for t in candidates if t is not None and t.name not in settings.tools_disabled]
