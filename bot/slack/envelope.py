"""Is a signed Slack request shaped the way Slack sends it? (pure; no I/O)

Bolt's middleware and listener matchers index payloads without checking types
(`body["actions"][0]`, `event.get(...)` on a non-object, ...) and answer 500 when one is
malformed, which makes Slack retry. Slack never sends such payloads, so the app checks the
parts Bolt touches first and answers 400 instead. The models are lenient: unknown fields are
allowed and only the fields Bolt or our handlers read are typed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

Obj = dict[str, Any]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Event(_Lenient):
    type: str
    # Some events carry objects here (`user_change`, `channel_created`).
    user: str | Obj | None = None
    channel: str | Obj | None = None
    ts: str | None = None
    thread_ts: str | None = None
    event_ts: str | None = None
    text: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    channel_type: str | None = None
    client_msg_id: str | None = None
    team: str | None = None
    tab: str | None = None
    message: Obj | None = None
    previous_message: Obj | None = None
    assistant_thread: Obj | None = None
    files: list[Obj] | None = None
    blocks: list[Obj] | None = None


class _EventEnvelope(_Lenient):
    type: str
    event: _Event
    event_id: str | None = None
    team_id: str | None = None


class _Action(_Lenient):
    action_id: str
    block_id: str | None = None
    value: str | None = None


class _Interaction(_Lenient):
    type: str
    user: Obj | None = None
    channel: Obj | None = None
    container: Obj | None = None
    message: Obj | None = None
    view: Obj | None = None
    actions: list[_Action] | None = None


class _Command(_Lenient):
    command: str
    team_id: str
    user_id: str
    channel_id: str


# Fields Slack always sends with these events (handlers may index them).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "app_mention": ("channel", "ts"),  # no `user` when another bot mentions the app
    "app_home_opened": ("user",),
    "assistant_thread_started": ("assistant_thread",),
    "assistant_thread_context_changed": ("assistant_thread",),
}
_USER_OBJECT_EVENTS = frozenset({"user_change", "team_join", "user_profile_changed"})
_CHANNEL_OBJECT_EVENTS = frozenset(
    {"channel_created", "channel_rename", "group_rename", "im_created", "channel_shared"}
)
_INTERACTIONS = frozenset(
    {
        "block_actions",
        "interactive_message",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "block_suggestion",
        "dialog_submission",
        "dialog_cancellation",
        "dialog_suggestion",
        "workflow_step_edit",
    }
)


def well_formed(body: object) -> bool:
    """True when `body` (the parsed request body Bolt built) has the shape Slack sends:
    an object; for events, an `event` object whose read fields have their Slack types; for
    interactions, object-valued parts and actions with string ids; for slash commands, who
    sent it and where."""
    if not isinstance(body, dict):
        return False
    try:
        if "event" in body or body.get("type") == "event_callback":
            _EventEnvelope.model_validate(body)
        elif body.get("type") in _INTERACTIONS or "actions" in body:
            interaction = _Interaction.model_validate(body)
            if "actions" in body and not interaction.actions:
                return False  # Bolt reads actions[0]
        elif "command" in body:
            _Command.model_validate(body)
        event = body.get("event")
        if isinstance(event, dict):
            needed = _REQUIRED.get(event["type"], ())
            if event["type"] == "message" and event.get("subtype") is None:
                needed = ("channel", "ts")
            if any(event.get(name) is None for name in needed):
                return False
            if isinstance(event.get("user"), dict) and event["type"] not in _USER_OBJECT_EVENTS:
                return False
            if (
                isinstance(event.get("channel"), dict)
                and event["type"] not in _CHANNEL_OBJECT_EVENTS
            ):
                return False
        if "assistant_thread" in (body.get("event") or {}):
            thread = body["event"]["assistant_thread"]
            return all(isinstance(thread.get(k), str) for k in ("channel_id", "thread_ts"))
    except ValidationError:
        return False
    return True
