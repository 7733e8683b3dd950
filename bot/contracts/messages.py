"""A chat message as sent upstream, and its one serialisation (history stores these bytes)."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def dumps(message: Message) -> str:
    """The one serialisation of a stored message (compact, UTF-8 kept as is)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
