"""bot.envelope.well_formed: the Slack payload shapes Bolt may be handed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.envelope import well_formed


def ev(**event: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event}


MENTION = {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.2", "text": "hi"}
THREAD = {"channel_id": "D1", "thread_ts": "1.2", "user_id": "U1"}
ACTION = {"action_id": "retry", "block_id": "b", "value": "v", "type": "button"}
COMMAND = {"command": "/deepseek", "team_id": "T1", "user_id": "U1", "channel_id": "C1"}


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (ev(**MENTION), True),
        (ev(**{**MENTION, "blocks": [{"type": "rich_text"}], "files": [{"id": "F1"}]}), True),
        (ev(type="message", channel="D1", ts="1.2", text="hi", channel_type="im"), True),
        (ev(type="message", subtype="message_changed", channel="C1", message={}), True),
        (ev(type="message", subtype="message_deleted", channel="C1"), True),
        (ev(type="user_change", user={"id": "U1"}), True),
        (ev(type="channel_created", channel={"id": "C9"}), True),
        (ev(type="assistant_thread_started", assistant_thread=THREAD), True),
        (ev(type="app_home_opened", user="U1", tab="home"), True),
        (ev(type="reaction_added", user="U1"), True),
        ({"type": "url_verification", "challenge": "x"}, True),
        ({"type": "block_actions", "user": {"id": "U1"}, "actions": [ACTION]}, True),
        ({"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1"}}, True),
        (COMMAND, True),
        # not an object
        ([1, 2], False),
        ("event_callback", False),
        (None, False),
        # events
        ({"type": "event_callback"}, False),
        ({"type": "event_callback", "event": None}, False),
        ({"type": "event_callback", "event": "app_mention"}, False),
        (ev(user="U1"), False),  # no type
        (ev(**{**MENTION, "type": 7}), False),
        (ev(**{**MENTION, "user": 1}), False),
        (ev(**{**MENTION, "user": {"id": "U1"}}), False),  # an object only in user_change etc.
        (ev(**{**MENTION, "channel": ["C1"]}), False),
        (ev(**{**MENTION, "ts": 1.2}), False),
        (ev(**{**MENTION, "text": {"t": 1}}), False),
        (ev(**{**MENTION, "blocks": "x"}), False),
        (ev(**{k: v for k, v in MENTION.items() if k != "user"}, bot_id="B2"), True),
        (ev(**{k: v for k, v in MENTION.items() if k != "channel"}), False),
        (ev(type="message", channel="D1", text="no ts"), False),
        (ev(type="app_home_opened", tab="home"), False),
        (ev(type="assistant_thread_started"), False),
        (ev(type="assistant_thread_started", assistant_thread=[1]), False),
        (ev(type="assistant_thread_started", assistant_thread={"user_id": "U1"}), False),
        ({**ev(**MENTION), "event_id": 5}, False),
        # interactions
        ({"type": "block_actions", "actions": []}, False),
        ({"type": "block_actions", "actions": 3}, False),
        ({"type": "block_actions", "actions": [{"value": "v"}]}, False),
        ({"type": "block_actions", "actions": [ACTION], "user": "U1"}, False),
        ({"type": "view_submission", "view": "V1"}, False),
        # slash commands
        ({k: v for k, v in COMMAND.items() if k != "user_id"}, False),
        ({k: v for k, v in COMMAND.items() if k != "team_id"}, False),
    ],
)
def test_well_formed(body: object, ok: bool) -> None:
    assert well_formed(body) is ok
