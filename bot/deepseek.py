"""DeepSeek / OpenAI-compatible chat client (provisional minimal version; see issue 3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from bot.config import Effort, Settings
from bot.errors import AuthError, BadRequest, BalanceExhausted, RateLimited, UpstreamDown
from bot.events import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCall, Usage


class DeepSeekClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        thinking: bool,
        effort: Effort,
        max_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream one chat completion as typed events; the last one is `Finish`.
        Raises UpstreamError subclasses."""
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "thinking": {"type": "enabled" if thinking else "disabled"},
        }
        if thinking:
            body["reasoning_effort"] = effort
        if tools:
            body["tools"] = list(tools)
            body["tool_choice"] = "auto"
        key = self._settings.deepseek_api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value() if key else ''}"}
        url = f"{self._settings.deepseek_base_url}/chat/completions"
        async with self._http.stream("POST", url, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise {401: AuthError, 402: BalanceExhausted, 429: RateLimited}.get(
                    resp.status_code, BadRequest if resp.status_code < 500 else UpstreamDown
                )(f"HTTP {resp.status_code}", status=resp.status_code)
            calls: dict[int, dict[str, str]] = {}
            reason = "stop"
            usage: Usage | None = None
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    u = chunk["usage"]
                    usage = Usage(
                        u.get("prompt_tokens", 0),
                        u.get("completion_tokens", 0),
                        u.get("prompt_cache_hit_tokens", 0),
                        u.get("prompt_cache_miss_tokens", 0),
                    )
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("reasoning_content"):
                        yield ReasoningDelta(delta["reasoning_content"])
                    if delta.get("content"):
                        yield TextDelta(delta["content"])
                    for tc in delta.get("tool_calls") or []:
                        slot = calls.setdefault(tc["index"], {"id": "", "name": "", "args": ""})
                        fn = tc.get("function") or {}
                        slot["id"] = slot["id"] or tc.get("id") or ""
                        slot["name"] = slot["name"] or fn.get("name") or ""
                        slot["args"] += fn.get("arguments") or ""
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
            for _, c in sorted(calls.items()):
                yield ToolCall(c["id"], c["name"], c["args"])
            yield Finish(reason, usage)
