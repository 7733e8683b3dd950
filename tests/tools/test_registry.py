"""tools.build_tools: which tools are offered, in what order, with what schemas."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.tools.conftest import tool_settings
from tools import build_tools

ALL = ["web_search", "fetch_url", "read_snippet", "post_snippet"]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({}, ALL[1:]),  # no search backend: web_search is not offered
        ({"searxng_url": "http://searx.local"}, ALL),
        ({"brave_api_key": "k"}, ALL),
        ({"tavily_api_key": "k"}, ALL),
        ({"search_backend": "brave", "tavily_api_key": "k"}, ALL[1:]),
        ({"searxng_url": "http://s", "tools_disabled": "fetch_url"}, ["web_search", *ALL[2:]]),
        ({"tools_disabled": "read_snippet, post_snippet"}, ["fetch_url"]),
        ({"searxng_url": "http://s", "tools_disabled": ",".join(ALL)}, []),
        ({"tools_disabled": "no_such_tool"}, ALL[1:]),
    ],
)
def test_offered_tools(overrides: dict[str, Any], names: list[str]) -> None:
    assert [t.name for t in build_tools(tool_settings(**overrides))] == names


def test_schemas_are_valid_and_stable() -> None:
    settings = tool_settings(searxng_url="http://searx.local")
    first = [t.schema() for t in build_tools(settings)]
    again = [t.schema() for t in build_tools(settings)]
    # Byte-identical on every build: the tool list is part of the cached prompt prefix.
    assert json.dumps(first) == json.dumps(again)
    for schema in first:
        fn = schema["function"]
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", fn["name"])
        assert fn["description"] and fn["parameters"]["type"] == "object"
        assert "title" not in fn["parameters"]


def test_labels() -> None:
    tools = {t.name: t for t in build_tools(tool_settings(searxng_url="http://s"))}
    cases = {
        "web_search": ({"query": "redis streams"}, "Searching the web for “redis streams”"),
        "fetch_url": ({"url": "https://example.com/a/b"}, "Reading example.com/a/b"),
        "read_snippet": ({"file": "main.py"}, "Reading snippet main.py"),
        "post_snippet": (
            {"title": "Fix", "language": "go", "content": "x"},
            "Posting snippet “Fix”",
        ),
    }
    for name, (args, label) in cases.items():
        tool = tools[name]
        assert tool.label(tool.args.model_validate(args)) == label
