"""Search backends' JSON answers to one compact list of results (pure: no network).

Shapes read (only the fields used):
- SearXNG `GET /search?format=json`: `{"results": [{"title", "url", "content"}]}`
- Brave `GET /res/v1/web/search`: `{"web": {"results": [{"title", "url", "description"}]}}`
  (descriptions carry `<strong>` highlight tags)
- Tavily `POST /search`: `{"results": [{"title", "url", "content"}]}`
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["searxng", "brave", "tavily"]

_TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True, slots=True)
class Result:
    title: str
    url: str
    snippet: str


def clean(text: object) -> str:
    """Plain one-line text: tags out, entities decoded, whitespace collapsed."""
    if not isinstance(text, str):
        return ""
    return " ".join(html.unescape(_TAGS.sub("", text)).split())


def parse(backend: Backend, data: Any) -> list[Result]:
    """The results in the backend's order; entries without a URL are skipped.
    Raises ValueError when the answer does not have the backend's shape."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if backend == "brave":
        web = data.get("web") or {}
        items = web.get("results", []) if isinstance(web, dict) else None
        snippet_key = "description"
    else:
        items = data.get("results")
        snippet_key = "content"
    if not isinstance(items, list):
        raise ValueError("no result list")
    results: list[Result] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url or url in seen:
            continue
        seen.add(url)
        results.append(Result(clean(item.get("title")) or url, url, clean(item.get(snippet_key))))
    return results


def format_results(
    query: str, results: list[Result], *, limit: int, snippet_chars: int = 300
) -> str:
    """A numbered list: title, URL, snippet (cut at `snippet_chars`) for the first `limit`."""
    if not results:
        return f"No results for “{query}”."
    lines = [f"Results for “{query}”:"]
    for n, r in enumerate(results[:limit], 1):
        snippet = r.snippet
        if len(snippet) > snippet_chars:
            snippet = snippet[: snippet_chars - 1].rstrip() + "…"
        lines.append(f"\n{n}. {r.title}\n   {r.url}")
        if snippet:
            lines.append(f"   {snippet}")
    return "\n".join(lines)
