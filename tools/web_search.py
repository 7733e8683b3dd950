"""web_search: the top web results for a query, from the configured backend.

Backends: SearXNG (SEARXNG_URL, self-hosted; its JSON API must be enabled), Brave Search
(BRAVE_API_KEY) and Tavily (TAVILY_API_KEY). SEARCH_BACKEND picks one; "auto" takes the first
configured in that order. With none configured the tool is not offered to the model.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

from bot.config import Settings
from bot.contracts.tool import Tool, ToolContext, ToolFailure
from tools.search_results import Backend, format_results, parse

NAME = "web_search"
DESCRIPTION = (
    "Search the web. Returns the top results, each with title, URL and a short snippet. Use "
    "it for recent events, facts you are not sure of, and documentation; read a promising "
    "result in full with fetch_url when it is offered."
)
_NAMES: dict[Backend, str] = {"searxng": "SearXNG", "brave": "Brave Search", "tavily": "Tavily"}


class SearchArgs(BaseModel):
    query: str = Field(
        min_length=1,
        max_length=400,
        description="What to search for, as you would type it into a search engine.",
    )


def backend_for(settings: Settings) -> Backend | None:
    """The backend to use, or None when the chosen one (or, for "auto", every one) is not
    configured."""
    configured: dict[Backend, bool] = {
        "searxng": bool(settings.searxng_url),
        "brave": settings.brave_api_key is not None,
        "tavily": settings.tavily_api_key is not None,
    }
    if settings.search_backend != "auto":
        return settings.search_backend if configured[settings.search_backend] else None
    return next((b for b, ok in configured.items() if ok), None)


def web_search_tool(settings: Settings) -> Tool[SearchArgs] | None:
    """The tool, or None when no search backend is configured."""
    if backend_for(settings) is None:
        return None
    return Tool(name=NAME, description=DESCRIPTION, args=SearchArgs, run=run, label=label)


def label(args: SearchArgs) -> str:
    query = " ".join(args.query.split())
    if len(query) > 60:
        query = query[:59] + "…"
    return f"Searching the web for “{query}”"


async def run(args: SearchArgs, ctx: ToolContext) -> str:
    settings = ctx.settings
    backend = backend_for(settings)
    if backend is None:
        raise ToolFailure("No web search service is configured.")
    data = await _ask(backend, args.query, settings, ctx.http)
    try:
        results = parse(backend, data)
    except ValueError:
        raise ToolFailure(f"{_NAMES[backend]} sent an answer that is not a result list.") from None
    return format_results(args.query, results, limit=settings.search_max_results)


def _request(backend: Backend, query: str, settings: Settings) -> dict[str, Any]:
    """Method, URL and parameters of one search request (keys are read here and only sent)."""
    count = settings.search_max_results
    if backend == "searxng":
        base = (settings.searxng_url or "").rstrip("/")
        url = base if base.endswith("/search") else base + "/search"
        return {"method": "GET", "url": url, "params": {"q": query, "format": "json"}}
    if backend == "brave":
        key = settings.brave_api_key.get_secret_value() if settings.brave_api_key else ""
        return {
            "method": "GET",
            "url": settings.brave_api_url,
            "params": {"q": query, "count": count},
            "headers": {"Accept": "application/json", "X-Subscription-Token": key},
        }
    key = settings.tavily_api_key.get_secret_value() if settings.tavily_api_key else ""
    return {
        "method": "POST",
        "url": settings.tavily_api_url,
        "json": {"query": query, "max_results": count, "search_depth": "basic"},
        "headers": {"Authorization": f"Bearer {key}"},
    }


async def _ask(backend: Backend, query: str, settings: Settings, http: httpx.AsyncClient) -> Any:
    name = _NAMES[backend]
    try:
        response = await http.request(
            **_request(backend, query, settings), timeout=settings.search_timeout
        )
    except httpx.TimeoutException:
        raise ToolFailure(f"{name} did not answer in time.") from None
    except httpx.HTTPError as exc:
        raise ToolFailure(f"Could not reach {name} ({type(exc).__name__}).") from None
    status = response.status_code
    if backend == "searxng" and status == 403:
        raise ToolFailure(
            "SearXNG refused JSON output: `json` must be listed in search.formats of its "
            "settings.yml."
        )
    if status in (401, 403):
        raise ToolFailure(f"{name} refused the request (HTTP {status}): check its API key.")
    if status == 429:
        raise ToolFailure(f"{name} is rate limiting searches; try again a little later.")
    if not 200 <= status < 300:
        raise ToolFailure(f"{name} answered HTTP {status}.")
    try:
        return response.json()
    except ValueError:
        raise ToolFailure(f"{name} sent an answer that is not JSON.") from None
