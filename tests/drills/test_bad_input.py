"""Drill: malformed and hostile Slack payloads through the running bot.

Payloads with valid signatures, of five kinds (events, envelopes, slash commands,
interactions, raw bodies): first every broken shape once (each required field missing, or of
each wrong type), then hypothesis-generated batches of every kind for variety (wrong types,
missing fields, huge strings, odd unicode). Each one is broken where a real Slack payload
never is, so the bot must not answer it: no 5xx, no chat.* call, no listener crash or error
log, and the bot still healthy afterwards. Invalid or stale signatures get 401.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SIGNING_SECRET, RunningBot, settle
from tests.slack_sender import event_envelope, sign

pytestmark = pytest.mark.slow

# --- values -------------------------------------------------------------------------------

ODD = [
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200c\u200d\ufeff",  # zero-width characters and a BOM
    "e\u0301\u0301\u0301\u0301",  # stacked combining marks
    "👩‍👩‍👧‍👦🏳️‍🌈",  # ZWJ sequences
    "\x00\x01\x1b[31m",  # NUL and an ANSI escape
    "\ud800",  # a lone surrogate (json.dumps escapes it; decoders must cope)
    "<@U1> <!channel> <!here> <#C1|general> <https://x.test|x>",
    "```\nunclosed code",
    "%s %n {0} ${jndi:ldap://x}",
    "ＡＢＣ 𝕏 ﷽",
]
odd_text = st.one_of(
    st.sampled_from(ODD),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=40),
    st.integers(1, 100_000).map(lambda n: "x" * n),  # huge strings, up to 100 kB
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
any_json = st.recursive(
    scalar,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=8,
)
# Not a string (a field Slack always sends as a string).
wrong_type = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(scalar, max_size=3),
    st.dictionaries(st.text(max_size=8), scalar, max_size=3),
)

# --- payloads -----------------------------------------------------------------------------


def event_template(kind: str, n: int) -> dict[str, Any]:
    ts = f"1700001000.{n % 1_000_000:06d}"
    base: dict[str, Any] = {"user": "U1", "ts": ts, "event_ts": ts, "team": "T1"}
    if kind == "app_mention":
        return {**base, "type": "app_mention", "channel": "C1", "text": "<@UBOT> hi"}
    if kind == "message_im":
        return {**base, "type": "message", "channel": "D1", "channel_type": "im", "text": "hi"}
    if kind == "message_thread":
        return {
            **base,
            "type": "message",
            "channel": "C1",
            "channel_type": "channel",
            "thread_ts": "1700000999.000001",
            "text": "hi",
        }
    if kind == "assistant_thread_started":
        return {
            "type": "assistant_thread_started",
            "event_ts": ts,
            "assistant_thread": {
                "user_id": "U1",
                "channel_id": "D1",
                "thread_ts": ts,
                "context": {"channel_id": "C1", "team_id": "T1"},
            },
        }
    return {**base, "type": "app_home_opened", "channel": "D1", "tab": "home"}


EVENT_KINDS = [
    "app_mention",
    "message_im",
    "message_thread",
    "assistant_thread_started",
    "app_home_opened",
]
REQUIRED = {  # breaking any one of these makes the event unanswerable
    "app_mention": ["user", "channel", "ts", "text"],
    "message_im": ["user", "channel", "ts", "text"],
    "message_thread": ["user", "channel", "ts", "text"],
    "assistant_thread_started": ["assistant_thread"],
    "app_home_opened": ["user"],
}
OPTIONAL = ["team", "event_ts", "blocks", "files", "subtype", "bot_id", "client_msg_id", "x"]


@st.composite
def junk_event(draw: st.DrawFn) -> tuple[str, bytes]:
    n = draw(st.integers(0, 10**9))
    kind = draw(st.sampled_from(EVENT_KINDS))
    event = event_template(kind, n)
    for name in draw(st.sets(st.sampled_from(OPTIONAL), max_size=3)):
        event[name] = draw(any_json)
    if "text" in event:
        event["text"] = draw(st.one_of(st.just(event["text"]), odd_text))
    for name in draw(st.sets(st.sampled_from(REQUIRED[kind]), min_size=1)):
        if name != "text" and draw(st.booleans()):
            event.pop(name, None)
        elif name == "assistant_thread":
            event[name] = draw(st.one_of(wrong_type, st.just({"user_id": "U1"})))
        else:
            event[name] = draw(wrong_type)
    payload = event_envelope(event, event_id=f"EvJunk{n}")
    return "application/json", json.dumps(payload).encode()


@st.composite
def junk_envelope(draw: st.DrawFn) -> tuple[str, bytes]:
    """The envelope itself is wrong: no event, an event that is not an object, odd types."""
    payload: Any = {
        "type": draw(st.sampled_from(["event_callback", "url_verification", "app_rate_limited"])),
        "team_id": draw(st.one_of(st.just("T1"), wrong_type)),
        "event_id": draw(st.one_of(st.just("EvEnv"), wrong_type, st.none())),
    }
    choice = draw(st.integers(0, 3))
    if choice == 1:
        payload["event"] = draw(st.one_of(wrong_type, st.none(), odd_text))
    elif choice == 2:
        payload["event"] = {"type": draw(st.one_of(odd_text, wrong_type))}
    elif choice == 3:
        payload = draw(any_json)  # any JSON at all, even a bare number
    return "application/json", json.dumps(payload).encode()


@st.composite
def junk_command(draw: st.DrawFn) -> tuple[str, bytes]:
    """A slash command missing who sent it or where (form fields are always strings)."""
    form = {
        "token": "legacy",
        "team_id": "T1",
        "channel_id": "C1",
        "user_id": "U1",
        "command": draw(st.sampled_from(["/deepseek", "/other"])),
        "text": draw(odd_text),
        "response_url": "http://127.0.0.1:9/response",
        "trigger_id": "trig",
    }
    for name in draw(st.sets(st.sampled_from(["team_id", "user_id", "channel_id"]), min_size=1)):
        form.pop(name)
    return "application/x-www-form-urlencoded", urlencode(form, errors="surrogatepass").encode()


@st.composite
def junk_interaction(draw: st.DrawFn) -> tuple[str, bytes]:
    """Block actions and view submissions with broken shapes, or a payload that is not JSON."""
    if draw(st.integers(0, 4)) == 0:
        raw = draw(odd_text)
        return "application/x-www-form-urlencoded", urlencode(
            {"payload": raw}, errors="surrogatepass"
        ).encode()
    action = {
        "action_id": draw(
            st.one_of(st.sampled_from(["retry", "show_reasoning", "feedback"]), odd_text)
        ),
        "value": draw(st.one_of(odd_text, wrong_type)),
        "block_id": draw(odd_text),
        "type": "button",
    }
    payload: dict[str, Any] = {
        "type": draw(st.sampled_from(["block_actions", "view_submission", "shortcut", "junk"])),
        "team": {"id": "T1"},
        "user": draw(st.one_of(wrong_type, st.none(), st.just({}))),
        "channel": draw(st.one_of(wrong_type, st.just({"id": "C1"}))),
        "container": draw(any_json),
        "message": draw(any_json),
        "actions": draw(st.one_of(wrong_type, st.just([action]), st.just([]))),
        "trigger_id": "trig",
        "api_app_id": "A1",
    }
    return "application/x-www-form-urlencoded", urlencode({"payload": json.dumps(payload)}).encode()


raw_body = st.tuples(
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
    st.binary(max_size=300),
)
KINDS: dict[str, st.SearchStrategy[tuple[str, bytes]]] = {  # the same kinds as SHAPES
    "event": junk_event(),
    "envelope": junk_envelope(),
    "command": junk_command(),
    "interaction": junk_interaction(),
    "raw": raw_body,
}

# --- every broken shape once ----------------------------------------------------------------

Request = tuple[str, bytes]  # content type, body
MISSING = object()
WRONG_TYPES: list[Any] = [7, 2.5, True, ["U1"], {"id": "U1"}]  # each kind of non-string


def json_body(payload: Any) -> Request:
    return "application/json", json.dumps(payload).encode()


def form_body(form: dict[str, str]) -> Request:
    return "application/x-www-form-urlencoded", urlencode(form).encode()


def event_shapes() -> list[Request]:
    """Each required field of each event kind missing, and of each wrong type."""
    found: list[Request] = []
    for kind in EVENT_KINDS:
        for name in REQUIRED[kind]:
            ways = WRONG_TYPES if name == "text" else [MISSING, *WRONG_TYPES]
            if name == "assistant_thread":
                ways = [*ways, {"user_id": "U1"}]
            for way in ways:
                event = event_template(kind, len(found))
                if way is MISSING:
                    del event[name]
                else:
                    event[name] = way
                found.append(json_body(event_envelope(event, event_id=f"EvShape{len(found)}")))
    return found


def envelope_shapes() -> list[Request]:
    """No event, an event that is not an object or has no string type; not an envelope."""
    found = []
    events: list[Any] = [MISSING, None, "app_mention", *WRONG_TYPES, {}, {"type": ODD[0]}]
    events += [{"type": wrong} for wrong in WRONG_TYPES]
    for kind in ("event_callback", "url_verification", "app_rate_limited"):
        for event in events:
            payload: dict[str, Any] = {"type": kind, "team_id": "T1", "event_id": "EvEnv"}
            if event is not MISSING:
                payload["event"] = event
            found.append(json_body(payload))
    for where in ({"team_id": 7}, {"event_id": 7}, {"event_id": None}):
        found.append(json_body({"type": "event_callback", **where}))
    not_envelopes: list[Any] = [None, 0, "event_callback", [], [{"type": "event_callback"}], {}]
    found += [json_body(payload) for payload in not_envelopes]
    return found


def command_shapes() -> list[Request]:
    """Every non-empty set of who-and-where fields missing, for our command and another."""
    who = ["team_id", "user_id", "channel_id"]
    found = []
    for command in ("/deepseek", "/other"):
        for mask in range(1, 2 ** len(who)):
            form = {
                "token": "legacy",
                "team_id": "T1",
                "channel_id": "C1",
                "user_id": "U1",
                "command": command,
                "text": "usage",
                "response_url": "http://127.0.0.1:9/response",
                "trigger_id": "trig",
            }
            for i, name in enumerate(who):
                if mask & (1 << i):
                    del form[name]
            found.append(form_body(form))
    return found


def interaction_shapes() -> list[Request]:
    """A payload that is not JSON; each action of each interaction type from a user that is
    not an object; each other part Bolt reads of the wrong shape."""
    found = [form_body({"payload": raw}) for raw in ["", "{", "[1, 2", "null", ODD[0], "\x00"]]
    for kind in ("block_actions", "view_submission", "shortcut", "junk"):
        for action_id in ("retry", "show_reasoning", "feedback", ODD[2]):
            action = {"action_id": action_id, "value": "v", "block_id": "b", "type": "button"}
            users: list[Any] = [None, {}, 7, ["U1"]]
            for user in users:
                payload: dict[str, Any] = {
                    "type": kind,
                    "team": {"id": "T1"},
                    "user": user,
                    "channel": {"id": "C1"},
                    "actions": [action],
                    "trigger_id": "trig",
                    "api_app_id": "A1",
                }
                found.append(form_body({"payload": json.dumps(payload)}))
    wrong_parts: list[dict[str, Any]] = [
        {"channel": 7},
        {"actions": 7},
        {"actions": {"action_id": "retry"}},
        {"actions": [7]},
        {"actions": [{"action_id": "retry", "value": 7}]},
        {"actions": [{"value": "v"}]},
        {"container": 7},
        {"message": [1]},
    ]
    for broken in wrong_parts:
        payload = {"type": "block_actions", "team": {"id": "T1"}, "user": {}, **broken}
        found.append(form_body({"payload": json.dumps(payload)}))
    return found


def raw_shapes() -> list[Request]:
    """Empty, truncated and non-UTF-8 bodies under each content type."""
    bodies = [b"", b"\xff\xfe\x00", b"{", b"payload=%ff%fe", b"\x00" * 300]
    return [
        (content_type, body)
        for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain")
        for body in bodies
    ]


SHAPES: dict[str, Callable[[], list[Request]]] = {
    "event": event_shapes,
    "envelope": envelope_shapes,
    "command": command_shapes,
    "interaction": interaction_shapes,
    "raw": raw_shapes,
}


# --- the drill ----------------------------------------------------------------------------

PER_KIND = 4  # payloads of each kind in one hypothesis example (sent together)
EXAMPLES = 10  # hypothesis examples: PER_KIND * EXAMPLES = 40 payloads of each kind


class ListenerErrors(logging.Handler):
    """Collects ERROR records with a traceback (a listener that crashed)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@st.composite
def batch(draw: st.DrawFn) -> list[tuple[str, Request]]:
    """PER_KIND payloads of every kind, shuffled."""
    found = [(kind, draw(strategy)) for kind, strategy in KINDS.items() for _ in range(PER_KIND)]
    return draw(st.permutations(found))


async def send_all(bot: RunningBot, requests: list[tuple[str, Request]]) -> list[int]:
    """Post the requests together (a few connections); the statuses, each checked < 500."""
    responses = await asyncio.gather(
        *(bot.slack.post(body, content_type) for _, (content_type, body) in requests)
    )
    for (_, (_, body)), response in zip(requests, responses, strict=True):
        assert response.status_code < 500, (response.status_code, body[:300])
    return [r.status_code for r in responses]


# Its own budget: ~450 requests with bodies up to 100 kB, signed and checked one by one; a few
# seconds alone, several times that under coverage on a busy 2-core machine.
@pytest.mark.timeout(300)
async def test_hostile_payloads_are_ignored(bot: RunningBot) -> None:
    errors = ListenerErrors()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    drawn: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch())
    def one(requests: list[tuple[str, Request]]) -> None:
        # A thread of its own: the bot answers on the test's loop meanwhile.
        asyncio.run_coroutine_threadsafe(send_all(bot, requests), loop).result(timeout=60)
        drawn.update(kind for kind, _ in requests)

    try:
        with structlog.testing.capture_logs() as logs:
            for kind, shapes in SHAPES.items():  # one at a time, on one keep-alive connection
                for request in shapes():
                    await send_all(bot, [(kind, request)])
            await asyncio.to_thread(one)
            await settle()
    finally:
        logging.getLogger().removeHandler(errors)
    assert min(drawn[kind] for kind in KINDS) >= PER_KIND * EXAMPLES, drawn
    chat = [c.method for c in bot.fake_slack.calls if c.method.startswith("chat.")]
    assert chat == [], chat[:10]
    assert bot.fake_deepseek.requests == []
    assert [r.getMessage() for r in errors.records] == []
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{bot.url}/healthz")).status_code == 200


def signed_mention() -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "EvSig1",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U1",
                "channel": "C1",
                "ts": "1700002000.000001",
                "text": "<@UBOT> hi",
            },
        }
    ).encode()


def now() -> int:
    return int(time.time())


BAD_SIGNATURES: dict[str, Callable[[bytes], dict[str, str]]] = {
    "wrong_secret": lambda b: {
        "X-Slack-Request-Timestamp": str(now()),
        "X-Slack-Signature": sign("not-the-secret", str(now()), b),
    },
    "stale_timestamp": lambda b: {
        "X-Slack-Request-Timestamp": str(now() - 600),
        "X-Slack-Signature": sign(SIGNING_SECRET, str(now() - 600), b),
    },
    "future_timestamp": lambda b: {
        "X-Slack-Request-Timestamp": str(now() + 600),
        "X-Slack-Signature": sign(SIGNING_SECRET, str(now() + 600), b),
    },
    "other_body": lambda b: {
        "X-Slack-Request-Timestamp": str(now()),
        "X-Slack-Signature": sign(SIGNING_SECRET, str(now()), b + b" "),
    },
    "garbage_signature": lambda b: {
        "X-Slack-Request-Timestamp": str(now()),
        "X-Slack-Signature": "v0=" + "0" * 64,
    },
    "no_signature": lambda b: {"X-Slack-Request-Timestamp": str(now())},
    "no_timestamp": lambda b: {"X-Slack-Signature": sign(SIGNING_SECRET, str(now()), b)},
    "nothing": lambda b: {},
}


@pytest.mark.parametrize("case", sorted(BAD_SIGNATURES))
async def test_bad_signature_is_401(case: str, bot: RunningBot) -> None:
    body = signed_mention()
    headers = {"Content-Type": "application/json", **BAD_SIGNATURES[case](body)}
    response = await bot.slack.http.post(bot.slack.url, content=body, headers=headers)
    assert response.status_code == 401
    await settle()
    assert [c for c in bot.fake_slack.calls if c.method.startswith("chat.")] == []
    assert bot.fake_deepseek.requests == []


@pytest.mark.parametrize("stamp", ["abc", "", "1e9", "-1", "99999999999999999999999"])
async def test_malformed_timestamp_is_rejected(stamp: str, bot: RunningBot) -> None:
    body = signed_mention()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body),
    }
    response = await bot.slack.http.post(bot.slack.url, content=body, headers=headers)
    assert 400 <= response.status_code < 500
