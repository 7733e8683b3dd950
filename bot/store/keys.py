"""The Redis key schema. The only module that formats a key.

Everything lives under `dsk:`. Keys of one thread share the hash tag `{team:channel:thread}`
so they land on one Redis Cluster shard (MULTI and Lua stay legal); per-team aggregates share
`{team}`.
"""

from __future__ import annotations

from bot.contracts.thread import ThreadRef

PREFIX = "dsk"


def history(t: ThreadRef) -> str:
    """LIST of JSON messages, exactly as sent upstream."""
    return f"{PREFIX}:{t.tag}:msgs"


def thread_meta(t: ThreadRef) -> str:
    """HASH: last prompt tokens, interrupted flag, participants."""
    return f"{PREFIX}:{t.tag}:meta"


def thread_lock(t: ThreadRef) -> str:
    return f"{PREFIX}:{t.tag}:lock"


def turn(t: ThreadRef, turn_id: str) -> str:
    """HASH of one turn, read and written only by `bot/store/turns.py`: its question, asker,
    reasoning, model and each person's feedback vote."""
    return f"{PREFIX}:{t.tag}:turn:{turn_id}"


def seen(team: str, delivery_id: str) -> str:
    """Exactly-once marker for a Slack delivery (event_id or client_msg_id). Per team, so one
    delivery's markers share a Cluster slot and are claimed together in one script."""
    return f"{PREFIX}:{{{team}}}:seen:{delivery_id}"


def user_prefs(team: str, user: str) -> str:
    return f"{PREFIX}:{{{team}}}:prefs:user:{user}"


def channel_prefs(team: str, channel: str) -> str:
    return f"{PREFIX}:{{{team}}}:prefs:chan:{channel}"


def usage(team: str, day: str, dimension: str) -> str:
    """HASH of per-day aggregates. `dimension`: total, model, user, channel, thread.
    Fields are `{member}:{metric}` (or `{metric}` for total); a thread member is
    `{channel}/{thread_ts}`."""
    return f"{PREFIX}:{{{team}}}:usage:{day}:{dimension}"


def usage_month(team: str, month: str) -> str:
    """HASH of one month's running totals (`cost`), for the workspace budget. `month`: YYYY-MM."""
    return f"{PREFIX}:{{{team}}}:usage-month:{month}"


def budgets(team: str) -> str:
    """HASH of spending caps in micro-dollars (`user_daily`, `workspace_monthly`) and who set
    them (`user_daily_by`, `workspace_monthly_by`)."""
    return f"{PREFIX}:{{{team}}}:budgets"


def notice(team: str, kind: str) -> str:
    """Rate limit for admin notices (one per kind per period)."""
    return f"{PREFIX}:{{{team}}}:notice:{kind}"


def display_name(team: str, user: str) -> str:
    return f"{PREFIX}:{{{team}}}:name:{user}"


def is_admin(team: str, user: str) -> str:
    return f"{PREFIX}:{{{team}}}:admin:{user}"


def feedback(team: str, model: str) -> str:
    return f"{PREFIX}:{{{team}}}:feedback:{model}"


def bot_threads(t: ThreadRef) -> str:
    """Marker: the bot has answered in this thread (follow-ups need no mention)."""
    return f"{PREFIX}:{t.tag}:joined"


def thread_waiters(t: ThreadRef) -> str:
    """ZSET of turns waiting for the thread lock, scored by message ts (FIFO order)."""
    return f"{PREFIX}:{t.tag}:waiters"


def thread_waiter(t: ThreadRef, turn_id: str) -> str:
    """Heartbeat of a waiting turn; a waiter whose heartbeat expired is skipped."""
    return f"{PREFIX}:{t.tag}:waiter:{turn_id}"
