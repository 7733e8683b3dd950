"""Slack message events, read (pure: no I/O).

`incoming` turns an event callback into the few fields a turn needs, or None when the payload
lacks them (Slack sends odd shapes; a drill sends hostile ones). `classify` says what the
messages surface does with a `message` event: answer it as a DM, answer it as a follow-up if
the bot is in that thread, or ignore it (edits, deletions, joins, bots, our own messages, and
channel messages that mention the bot, which arrive again as `app_mention`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ChannelKind = Literal["channel", "im", "assistant"]
Route = Literal["dm", "follow_up", "ignore"]

# Subtypes that are still a person writing to the thread.
USER_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A person's message that may become a turn."""

    team: str
    channel: str
    user: str
    text: str  # as Slack sent it (markup and escapes included)
    ts: str
    thread_ts: str  # the thread to answer in: the message's thread, or itself when top-level
    kind: ChannelKind
    delivery_ids: tuple[str, ...]  # event_id, client_msg_id: what makes a delivery unique
    user_team: str  # the asker's team (the stream's recipient_team_id)
    file_ids: tuple[str, ...] = field(default=())  # files shared with the message

    @property
    def top_level(self) -> bool:
        """The message starts its thread (the answer starts the thread under it)."""
        return self.thread_ts == self.ts


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _file_ids(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(f["id"] for f in raw if isinstance(f, Mapping) and _str(f.get("id")))


def incoming(body: Mapping[str, Any], kind: ChannelKind) -> Incoming | None:
    """The message in an event callback `body`, or None if it lacks a user, channel or a
    well-formed ts."""
    event = body.get("event")
    if not isinstance(event, Mapping):
        return None
    channel, user, ts = _str(event.get("channel")), _str(event.get("user")), _str(event.get("ts"))
    thread_ts = _str(event.get("thread_ts")) or ts
    if not (channel and user and _TS.match(ts) and _TS.match(thread_ts)):
        return None
    team = _str(body.get("team_id")) or _str(event.get("team"))
    if not team:
        return None
    ids = [f"event:{_str(body.get('event_id'))}"] if _str(body.get("event_id")) else []
    if _str(event.get("client_msg_id")):
        ids.append(f"msg:{_str(event.get('client_msg_id'))}")
    else:  # no client id (bots, some clients): the message itself is unique in its channel
        ids.append(f"ts:{channel}:{ts}")
    return Incoming(
        team=team,
        channel=channel,
        user=user,
        text=_str(event.get("text")),
        ts=ts,
        thread_ts=thread_ts,
        kind=kind,
        delivery_ids=tuple(ids),
        user_team=_str(event.get("user_team")) or _str(event.get("team")) or team,
        file_ids=_file_ids(event.get("files")),
    )


def classify(
    event: Mapping[str, Any],
    *,
    bot_user_id: str,
    bot_id: str,
    ignore_other_bots: bool,
    answer_follow_ups: bool,
) -> Route:
    """What to do with a `message` event: "dm" (a direct message: always a turn),
    "follow_up" (a reply in a channel thread: a turn if the bot answered in that thread), or
    "ignore"."""
    subtype = event.get("subtype")
    if subtype is not None and subtype not in USER_SUBTYPES:
        return "ignore"  # edits, deletions, joins, bot_message, channel topics, …
    user = _str(event.get("user"))
    sender_bot = _str(event.get("bot_id"))
    if (bot_user_id and user == bot_user_id) or (bot_id and sender_bot == bot_id):
        return "ignore"
    if sender_bot and ignore_other_bots:
        return "ignore"
    if not user:
        return "ignore"
    text = _str(event.get("text"))
    if _str(event.get("channel_type")) == "im" or _str(event.get("channel")).startswith("D"):
        return "dm"
    if bot_user_id and f"<@{bot_user_id}" in text:
        return "ignore"  # the same message arrives as app_mention
    if answer_follow_ups and _str(event.get("thread_ts")) not in ("", _str(event.get("ts"))):
        return "follow_up"
    return "ignore"
