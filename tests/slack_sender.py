"""Sends requests to the bot the way Slack does: signed with the signing secret."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.fakes.slack import Message

_ids = itertools.count(1)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def event_envelope(event: Any, *, event_id: str, team: str = "T1") -> dict[str, Any]:
    """An Events API `event_callback` around `event`, as Slack posts it."""
    return {
        "token": "legacy",
        "team_id": team,
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": "UBOT", "is_bot": True}],
        "event": event,
    }


def mention(msg: Message, *, user: str = "U1", client_msg_id: str = "") -> dict[str, Any]:
    """The `app_mention` event for a message of the fake Slack (in its thread, if any)."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": msg.text,
        "ts": msg.ts,
        "channel": msg.channel,
        "event_ts": msg.ts,
        "team": "T1",
    }
    if client_msg_id:
        event["client_msg_id"] = client_msg_id
    if msg.thread_ts:
        event["thread_ts"] = msg.thread_ts
    return event


class SlackSender:
    def __init__(self, url: str, secret: str, team: str = "T1") -> None:
        self.url = url  # .../slack/events
        self.secret = secret
        self.team = team
        self.http = httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature if signature is not None else sign(self.secret, ts, body)
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
            **(headers or {}),
        }
        return await self.http.post(self.url, content=body, headers=all_headers)

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> httpx.Response:
        """Deliver an Events API callback; returns Slack's view of the ack."""
        payload = event_envelope(event, event_id=event_id or f"Ev{next(_ids):08d}", team=self.team)
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(json.dumps(payload).encode(), "application/json", headers=headers)

    async def command(
        self,
        text: str,
        *,
        user: str = "U1",
        channel: str = "C1",
        command: str = "/deepseek",
        response_url: str = "http://127.0.0.1:9/response",
    ) -> httpx.Response:
        form = {
            "token": "legacy",
            "team_id": self.team,
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "response_url": response_url,
            "trigger_id": f"trig{next(_ids)}",
            "api_app_id": "A1",
        }
        return await self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        """Block actions, view submissions: form-encoded `payload=` JSON, as Slack sends."""
        payload = {"team": {"id": self.team}, "api_app_id": "A1", "token": "legacy", **payload}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, "application/x-www-form-urlencoded")
