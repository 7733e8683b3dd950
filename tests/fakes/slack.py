"""A fake Slack Web API on 127.0.0.1 that speaks the real wire protocol.

It accepts what slack_sdk's AsyncWebClient sends (form or JSON bodies, bearer token), keeps
messages per channel the way Slack shows them (native streams included), records every call,
and can be told to fail a method (`fail`) the way Slack fails: `ok: false` with an error code,
or HTTP 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float = 0.0  # time.monotonic() when the call arrived (benchmarks)


@dataclass
class Message:
    channel: str
    ts: str
    text: str = ""
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False
    chunks: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    def as_slack(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text}
        if self.user:
            out["user"] = self.user
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.blocks:
            out["blocks"] = self.blocks
        if self.files:
            out["files"] = self.files
        return out


@dataclass
class Failure:
    error: str
    status: int
    times: int
    retry_after: int | None


BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, list[Failure]] = {}
        self.views: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to `response_url`
        self.delay: dict[str, float] = {}
        self._ts = itertools.count(1)
        self.url = ""  # base URL ending with /api/, set on start
        self._runner: web.AppRunner | None = None
        self.add_user(BOT_USER, "deepseek", is_bot=True)

    # --- test-facing helpers ----------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, *, is_admin: bool = False, is_bot: bool = False
    ) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM,
            "name": name.lower(),
            "real_name": name,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "profile": {"display_name": name, "real_name": name},
        }

    def add_message(
        self, channel: str, text: str, *, user: str = "U1", thread_ts: str | None = None
    ) -> Message:
        msg = Message(channel=channel, ts=self.next_ts(), text=text, user=user, thread_ts=thread_ts)
        self.messages[msg.ts] = msg
        return msg

    def add_file(self, name: str, content: bytes, *, filetype: str = "text") -> dict[str, Any]:
        file_id = f"F{len(self.files) + 1:04d}"
        info = {
            "id": file_id,
            "name": name,
            "title": name,
            "filetype": filetype,
            "mimetype": "text/plain" if filetype != "binary" else "application/octet-stream",
            "size": len(content),
            "url_private": f"{self.url}../files/{file_id}",
        }
        self.files[file_id] = info
        self.file_contents[file_id] = content
        return info

    def fail(
        self,
        method: str,
        error: str = "internal_error",
        *,
        status: int = 200,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Make the next `times` calls of `method` fail (times=-1: until cleared)."""
        self.failures.setdefault(method, []).append(Failure(error, status, times, retry_after))

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """Messages of a thread in ts order, the parent first."""
        found = [
            m
            for m in self.messages.values()
            if m.channel == channel and (m.ts == thread_ts or m.thread_ts == thread_ts)
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def bot_replies(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.thread(channel, thread_ts) if m.bot_id == BOT_ID]

    async def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
        """Poll until `predicate()` is truthy (the bot works after acking)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("fake Slack: condition not met in time")
            await asyncio.sleep(interval)

    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    # --- server -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)  # slack_sdk GETs some, e.g. users.info
        app.router.add_get("/files/{file_id}", self._download)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{key}", self._response)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _download(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != "Bearer xoxb-test":
            return web.Response(status=302, headers={"Location": "/login"})
        content = self.file_contents.get(request.match_info["file_id"])
        if content is None:
            return web.Response(status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.uploads[request.match_info["file_id"]]["content"] = body
        return web.Response(text="OK - 1")

    @property
    def response_url(self) -> str:
        """A slash command's `response_url` that records what the app sends to it."""
        return self.url.replace("/api/", "/response/cmd")

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args: dict[str, Any] = await request.json()
        else:
            form = await request.post()
            args = {k: v for k, v in form.items() if isinstance(v, str)}
            args.update(request.query)  # GET methods send their arguments as a query string
        for key in ("blocks", "chunks", "files", "view", "prompts", "loading_messages"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        self.calls.append(
            Call(method, args, auth.removeprefix("Bearer ") or None, time.monotonic())
        )
        if method in self.delay:
            await asyncio.sleep(self.delay[method])
        failures = self.failures.get(method)
        if failures:
            failure = failures[0]
            if failure.times > 0:
                failure.times -= 1
                if failure.times == 0:
                    failures.pop(0)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return web.json_response(
                {"ok": False, "error": failure.error}, status=failure.status, headers=headers
            )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": True})
        try:
            result: dict[str, Any] = handler(args)
        except KeyError as exc:
            return web.json_response({"ok": False, "error": f"invalid_arguments: {exc}"})
        if "__error__" in result:
            return web.json_response({"ok": False, "error": result["__error__"]})
        return web.json_response({"ok": True, **result})

    # --- methods ------------------------------------------------------------------------

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "deepseek"}

    def _post(self, args: dict[str, Any], *, streaming: bool = False) -> Message:
        msg = Message(
            channel=args["channel"],
            ts=self.next_ts(),
            text=args.get("text") or args.get("markdown_text") or "",
            bot_id=BOT_ID,
            user=BOT_USER,
            thread_ts=args.get("thread_ts"),
            blocks=args.get("blocks") or [],
            streaming=streaming,
        )
        self.messages[msg.ts] = msg
        return msg

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._post(args)
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_slack()}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self.next_ts()}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[args["ts"]]
        if "text" in args or "markdown_text" in args:
            msg.text = args.get("text") or args.get("markdown_text") or ""
        if "blocks" in args:
            msg.blocks = args["blocks"] or []
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["channel"].startswith("C") and not (
            args.get("recipient_team_id") and args.get("recipient_user_id")
        ):
            raise KeyError("recipient_user_id")
        msg = self._post(args, streaming=True)
        # Text may start in `chunks` (slack_sdk's chat_stream sends markdown_text chunks).
        self._append(msg, {"chunks": args.get("chunks")})
        return {"channel": msg.channel, "ts": msg.ts}

    def _append(self, msg: Message, args: dict[str, Any]) -> None:
        msg.text += args.get("markdown_text") or ""
        for chunk in args.get("chunks") or []:
            msg.chunks.append(chunk)
            if chunk.get("type") == "markdown_text":
                msg.text += chunk.get("text", "")

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[args["ts"]]
        if not msg.streaming:
            return {"__error__": "message_not_in_streaming_state"}
        self._append(msg, args)
        return {"channel": msg.channel, "ts": msg.ts}

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[args["ts"]]
        self._append(msg, args)
        msg.blocks = args.get("blocks") or msg.blocks
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_slack()}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        msgs = self.thread(args["channel"], args["ts"])
        return {"messages": [m.as_slack() for m in msgs], "has_more": False}

    def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args["channel"]
        return {
            "channel": {
                "id": channel,
                "name": f"chan-{channel.lower()}",
                "is_im": channel.startswith("D"),
            }
        }

    def _m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": {"id": "D" + str(args["users"]).split(",")[0]}}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args["user"])
        if user is None:
            raise KeyError("user_not_found")
        return {"user": user}

    def _m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"file": self.files[args["file"]]}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"FU{len(self.uploads) + 1:04d}"
        self.uploads[file_id] = {
            "filename": args["filename"],
            "length": int(args["length"]),
            **args,
        }
        return {"upload_url": self.url.replace("/api/", f"/upload/{file_id}"), "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args["files"]
        for f in files:
            self.uploads[f["id"]].update(
                title=f.get("title"),
                channel=args.get("channel_id") or args.get("channels"),
                thread_ts=args.get("thread_ts"),
                initial_comment=args.get("initial_comment"),
            )
        return {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self.views.append(args["view"])
        return {"view": {"id": "V1", **args["view"]}}

    def _m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        self.views.append(args["view"])
        return {"view": {"id": "V2", **args["view"]}}
