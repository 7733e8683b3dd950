"""Pure Slack helpers: input cleanup, Markdown splitting, footer, answer blocks, event routing.
Table tests only: no network, no Redis, no clock."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.contracts.stream import Usage
from bot.core import prompt
from bot.slack.blocks import (
    FEEDBACK_ACTION,
    REASONING_ACTION,
    RETRY_ACTION,
    SECTION_LIMIT,
    TurnRef,
    answer_end,
    failure_end,
    reasoning_view,
    without_retry,
)
from bot.slack.format import (
    FENCE_RESERVE,
    clean_input,
    close_fence,
    cut_after,
    footer,
    mentioned_users,
    open_fence,
    split_markdown,
    title_from,
)
from bot.slack.incoming import classify, incoming

NAMES = {"U1": "Alice", "U2": "Bob"}


# --- input cleanup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<@UBOT> what is Redis?", "what is Redis?"),
        ("<@UBOT>: what is Redis?", "what is Redis?"),
        ("<@UBOT|deepseek>, hi", "hi"),
        ("hey <@UBOT> what now", "hey what now"),
        ("ask <@U1> and <@U2>", "ask @Alice and @Bob"),
        ("ask <@U9|carol>", "ask @carol"),  # unknown to the cache: the markup's label
        ("ask <@U9>", "ask @U9"),  # nothing better: the id
        ("in <#C1|general>", "in #general"),
        ("in <#C1>", "in #C1"),
        ("see <https://example.com/a|the docs>", "see the docs (https://example.com/a)"),
        ("see <https://example.com/a>", "see https://example.com/a"),
        ("see <http://example.com|example.com>", "see http://example.com"),
        ("mail <mailto:a@b.io|a@b.io>", "mail a@b.io"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!subteam^S1|@devs> look", "@devs look"),
        ("due <!date^1700000000^{date}|Nov 14>", "due Nov 14"),
        ("a &lt;b&gt; &amp;&amp; c", "a <b> && c"),
        ("&amp;lt; stays literal", "&lt; stays literal"),
        ("```\n    indented code\n```", "```\n    indented code\n```"),
        ("  <@UBOT>   ", ""),
    ],
)
def test_clean_input(raw: str, clean: str) -> None:
    assert clean_input(raw, bot_user_id="UBOT", names=NAMES) == clean


@pytest.mark.parametrize(
    ("text", "users"),
    [
        ("<@UBOT> hi <@U1> <@U2|bob> <@U1>", ["U1", "U2"]),
        ("no mentions <#C1|x>", []),
        ("<@UBOT>", []),
    ],
)
def test_mentioned_users(text: str, users: list[str]) -> None:
    assert mentioned_users(text, bot_user_id="UBOT") == users


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("What is Redis?", "What is Redis?"),
        ("\n\n  first line\nsecond line", "first line"),
        ("", "New chat"),
        ("word " * 30, "word word word word word word word word word word word…"),
        ("x" * 80, "x" * 59 + "…"),
    ],
)
def test_title_from(question: str, title: str) -> None:
    assert title_from(question) == title
    assert len(title_from(question)) <= 60


def test_thread_note() -> None:
    assert prompt.thread_note(date(2026, 11, 7), "#general") == (
        "[Thread started 2026-11-07 in #general]"
    )


# --- fences and splitting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fence"),
    [
        ("plain", None),
        ("```python\nx = 1\n", "```python"),
        ("```python\nx = 1\n```", None),
        ("```python\nx = 1\n```\n", None),
        ("~~~~\ncode\n~~~", "~~~~"),  # a shorter closing fence does not close
        ("````\n```\n", "````"),
        ("```\na\n```\n\n```js\nb", "```js"),
        ("   ```sh\nls", "```sh"),
        ("``` not`a`fence\ntext", None),  # a backtick info string may not hold backticks
    ],
)
def test_open_fence(text: str, fence: str | None) -> None:
    assert open_fence(text) == fence


@pytest.mark.parametrize(
    ("text", "suffix"),
    [("done", ""), ("```py\nx", "\n```"), ("```py\nx\n", "```"), ("~~~\nx\n", "~~~")],
)
def test_close_fence(text: str, suffix: str) -> None:
    assert close_fence(text) == suffix
    assert open_fence(text + suffix) is None


PARAS = "".join(f"Paragraph {i} has a few words in it.\n\n" for i in range(10))
BLOCK = "```python\n" + "".join(f"print({i})\n" for i in range(40)) + "```\n"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 100, ["short"]),
        ("aaaa\n\nbbbb\n\ncccc dddd", 20, ["aaaa\n\nbbbb", "cccc dddd"]),  # paragraph end
        ("aaaa bbbb. cccc dddd eeee", 24, ["aaaa bbbb.", "cccc dddd eeee"]),  # sentence end
        ("a" * 50, 25, ["a" * 17, "a" * 17, "a" * 16]),  # no boundary: hard cuts
        # A code block that fits a piece of its own is moved whole to the next piece.
        (
            "intro text.\n\n```\nx = 1\ny = 2\n```\nafter",
            34,
            ["intro text.", "```\nx = 1\ny = 2\n```\nafter"],
        ),
    ],
)
def test_split_markdown_table(text: str, limit: int, expected: list[str]) -> None:
    assert split_markdown(text, limit) == expected


@pytest.mark.parametrize("limit", [60, 97, 200, 333, 1000])
@pytest.mark.parametrize("text", [PARAS, BLOCK, PARAS + BLOCK + PARAS, BLOCK + BLOCK])
def test_split_markdown_never_breaks_code(text: str, limit: int) -> None:
    pieces = split_markdown(text, limit)
    for piece in pieces:
        assert len(piece) <= limit
        assert open_fence(piece) is None  # closed when cut inside
        for line in piece.splitlines():
            assert not line.startswith("print(") or line.endswith(")")  # cut at line ends
    words = " ".join(pieces).replace("```python", "").replace("```", "").split()
    assert words == text.replace("```python", "").replace("```", "").split()


def test_a_big_block_is_closed_and_reopened_with_its_info_string() -> None:
    first, second, *_ = split_markdown(BLOCK, 120)
    assert first.startswith("```python\n") and first.endswith("\n```")
    assert second.startswith("```python\nprint(")


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab \n`~.#-")), max_size=400),
    st.integers(min_value=2 * FENCE_RESERVE + 1, max_value=120),
)
def test_split_markdown_keeps_every_word_and_the_limit(text: str, limit: int) -> None:
    pieces = split_markdown(text, limit)
    assert all(len(p) <= limit for p in pieces)

    def words(s: str) -> list[str]:
        return [w for w in s.replace("`", " ").replace("~", " ").split() if w]

    assert "".join(words(" ".join(pieces))) == "".join(words(text))


@pytest.mark.parametrize(
    ("sent", "pending", "limit", "head", "rest"),
    [
        ("", "aaaa\n\nbbbb", 100, "aaaa\n\nbbbb", ""),  # fits: nothing is moved
        ("0123456789", "\n\nabcdefghij\n\nklm", 35, "\n\nabcdefghij", "klm"),
        ("```py\nx = 1\n", "y = 2\nz = 3\n", 28, "y = 2\n```", "```py\nz = 3\n"),
        ("x" * 30, "yyyy", 32, "", "yyyy"),  # the message is full: all goes on
    ],
)
def test_cut_after(sent: str, pending: str, limit: int, head: str, rest: str) -> None:
    cut = cut_after(sent, pending, limit)
    if len(sent) + len(pending) <= limit - FENCE_RESERVE:
        return
    assert (cut.head(pending), cut.rest(pending)) == (head, rest)
    assert len(sent + cut.head(pending)) <= limit


# --- footer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "thinking", "cost", "line"),
    [
        (
            Usage(1200, 300, 1000, 200, 100),
            True,
            420,
            "m · thinking · 1,200 in (1,000 cached) · 300 out (100 reasoning) · $0.0004",
        ),
        (Usage(10, 5, 0, 10, 0), False, 0, "m · no thinking · 10 in · 5 out · $0.0000"),
        (
            Usage(2_000_000, 10_000),
            True,
            1_234_567,
            "m · thinking · 2,000,000 in · 10,000 out · $1.2346",
        ),
    ],
)
def test_footer(usage: Usage, thinking: bool, cost: int, line: str) -> None:
    assert footer("m", thinking, usage, cost) == line


# --- blocks --------------------------------------------------------------------------------

REF = TurnRef("C1", "1700000000.000001", "turn1", "deepseek-v4-pro")


def ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e.get("action_id", "") for b in blocks for e in b.get("elements", [])]


@pytest.mark.parametrize(
    ("reasoning", "line", "expected"),
    [
        (False, None, [FEEDBACK_ACTION]),
        (True, None, [REASONING_ACTION, FEEDBACK_ACTION]),
        (True, "m · thinking", [REASONING_ACTION, FEEDBACK_ACTION, ""]),
    ],
)
def test_answer_end(reasoning: bool, line: str | None, expected: list[str]) -> None:
    blocks = answer_end(REF, reasoning=reasoning, footer=line)
    assert ids(blocks) == expected
    feedback = next(b for b in blocks if b["type"] == "context_actions")["elements"][0]
    assert feedback["type"] == "feedback_buttons"
    for button, vote in (("positive_button", "up"), ("negative_button", "down")):
        value = feedback[button]["value"]
        assert json.loads(value)["vote"] == vote and TurnRef.loads(value) == REF


def test_failure_end_and_retry_replacement() -> None:
    blocks = [{"type": "markdown", "text": "x", "block_id": "md"}, *failure_end(REF)]
    assert ids(blocks) == [RETRY_ACTION]
    after = without_retry(blocks, "Retried by <@U1>")
    assert RETRY_ACTION not in ids(after) and after[0]["block_id"] == "md"
    assert after[-1]["elements"][0]["text"] == "Retried by <@U1>"


@pytest.mark.parametrize("value", ["", "nope", "[]", '{"channel": "C1"}', "null"])
def test_turn_ref_rejects_foreign_values(value: str) -> None:
    assert TurnRef.loads(value) is None


@pytest.mark.parametrize(
    ("reasoning", "blocks"),
    [("short", 1), ("x " * 2000, 2), ("", 1), ("line\n" * 200_000, 100)],
)
def test_reasoning_view(reasoning: str, blocks: int) -> None:
    view = reasoning_view(reasoning)
    assert view["type"] == "modal" and len(view["blocks"]) == blocks
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in view["blocks"])
    assert all(b["text"]["type"] == "plain_text" for b in view["blocks"])


# --- events --------------------------------------------------------------------------------


def body(**event: Any) -> dict[str, Any]:
    base = {"type": "message", "channel": "C1", "user": "U1", "ts": "1700000000.000002"}
    return {"team_id": "T1", "event_id": "Ev1", "event": {**base, **event}}


@pytest.mark.parametrize(
    ("event", "route"),
    [
        ({"channel": "D1", "channel_type": "im"}, "dm"),
        ({"channel": "D1", "channel_type": "im", "subtype": "file_share"}, "dm"),
        ({"thread_ts": "1700000000.000001"}, "follow_up"),
        ({"thread_ts": "1700000000.000001", "subtype": "thread_broadcast"}, "follow_up"),
        ({}, "ignore"),  # top-level channel chatter
        ({"thread_ts": "1700000000.000002"}, "ignore"),  # a thread parent is top-level
        ({"thread_ts": "1700000000.000001", "text": "<@UBOT> hi"}, "ignore"),  # app_mention's
        ({"channel_type": "im", "user": "UBOT"}, "ignore"),
        ({"channel_type": "im", "bot_id": "BBOT"}, "ignore"),
        ({"channel_type": "im", "bot_id": "BOTHER"}, "ignore"),
        ({"channel_type": "im", "subtype": "message_changed"}, "ignore"),
        ({"channel_type": "im", "subtype": "message_deleted"}, "ignore"),
        ({"channel_type": "im", "subtype": "channel_join"}, "ignore"),
        ({"channel_type": "im", "subtype": "bot_message"}, "ignore"),
        ({"channel_type": "im", "user": None}, "ignore"),
    ],
)
def test_classify(event: dict[str, Any], route: str) -> None:
    got = classify(
        body(**event)["event"],
        bot_user_id="UBOT",
        bot_id="BBOT",
        ignore_other_bots=True,
        answer_follow_ups=True,
    )
    assert got == route


def test_classify_settings() -> None:
    other_bot = body(channel_type="im", bot_id="BOTHER")["event"]
    follow = body(thread_ts="1700000000.000001")["event"]
    kw: dict[str, Any] = {"bot_user_id": "UBOT", "bot_id": "BBOT"}
    assert classify(other_bot, ignore_other_bots=False, answer_follow_ups=True, **kw) == "dm"
    assert classify(follow, ignore_other_bots=True, answer_follow_ups=False, **kw) == "ignore"


def test_incoming_reads_a_message() -> None:
    raw = body(
        text="hi",
        thread_ts="1700000000.000001",
        client_msg_id="abc",
        user_team="T9",
        files=[{"id": "F1"}, {"name": "no id"}, "junk"],
    )
    msg = incoming(raw, "channel")
    assert msg is not None
    assert (msg.team, msg.channel, msg.user, msg.text) == ("T1", "C1", "U1", "hi")
    assert (msg.thread_ts, msg.top_level, msg.user_team) == ("1700000000.000001", False, "T9")
    assert msg.delivery_ids == ("event:Ev1", "msg:abc")
    assert msg.file_ids == ("F1",)


def test_incoming_top_level_and_without_client_id() -> None:
    msg = incoming(body(), "im")
    assert msg is not None and msg.top_level and msg.thread_ts == msg.ts
    assert msg.delivery_ids == ("event:Ev1", "ts:C1:1700000000.000002")


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"event": "x"},
        body(user=None),
        body(channel=7),
        body(ts="not-a-ts"),
        body(ts="1700000000.000002", thread_ts="x" * 5000),
        {"event": body()["event"]},  # no team anywhere
    ],
)
def test_incoming_rejects_malformed_payloads(raw: dict[str, Any]) -> None:
    assert incoming(raw, "channel") is None
