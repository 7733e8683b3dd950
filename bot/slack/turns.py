"""From a Slack message to a finished answer in its thread: what every Slack surface shares.

`SlackTurns.answer` takes a parsed message (`incoming.Incoming`) and:
1. claims the delivery once across retries and replicas (`claims.claim_once` on the event id
   and the client message id);
2. marks the thread as one the bot answers in (follow-ups need no mention);
3. builds the engine `Turn`: text cleaned (`format.clean_input`) with display names
   (`names.DisplayNames`), shared files prepared by the
   thread's `SlackSurface` (small text files inlined, the rest for `read_snippet`), the thread
   note (date and place, used by the engine only where a thread starts), Slack's formatting
   note, and a `rebuild` callback that reads the thread from Slack (`conversations.replies`)
   if Redis has no history;
4. streams `Engine.run(turn)` into the thread (`stream.AnswerStream`) inside
   `deps.busy()`, with team, channel, thread and turn id bound to every log line: the Slack
   side's turn boundary;
5. after a failed turn, keeps its question for "Retry" (`TurnStore`) and, for failures an
   admin must fix (`notify_admins`), tells the admins (`SlackAdmins.notify_failure`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.exceptions import RedisError
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.errors import Crashed
from bot.contracts.events import TurnFailed
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import SharedFile
from bot.core.engine import Turn
from bot.core.prompt import thread_note
from bot.deps import Deps
from bot.slack.admins import SlackAdmins
from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.slack.format import FORMAT_NOTE, clean_input, mentioned_users
from bot.slack.incoming import ChannelKind, Incoming
from bot.slack.names import DisplayNames
from bot.slack.stream import AnswerStream, Rendered, StatusFn, Target
from bot.slack.surface import SlackSurface
from bot.store import keys
from bot.store.claims import claim_once

log = structlog.get_logger(__name__)

REBUILD_PAGES = 5  # conversations.replies pages read when rebuilding a thread (200 each)

# Called once a delivery is claimed, with True if the bot had not answered in the thread yet.
OnStart = Callable[[bool], Awaitable[None]]


class SlackTurns:
    def __init__(self, deps: Deps, admins: SlackAdmins) -> None:
        assert deps.slack is not None
        self.deps = deps
        self.records = deps.records
        self.admins = admins
        self.client: AsyncWebClient = deps.slack
        self.names = DisplayNames(deps.redis, deps.slack)
        self.interval = deps.settings.slack_update_interval
        self._channel_names: dict[str, str] = {}  # per process: channels are rarely renamed

    async def answer(
        self,
        msg: Incoming,
        *,
        bot_user_id: str,
        status: StatusFn | None = None,
        on_start: OnStart | None = None,
    ) -> Rendered | None:
        """Answer `msg` in its thread. None if this delivery was already claimed (a retry
        by Slack, or another replica has it). With the store down, the message is answered
        all the same (the engine then ends the turn with the store's visible message)."""
        redis = self.deps.redis
        thread = ThreadRef(msg.team, msg.channel, msg.thread_ts)
        try:
            if not await claim_once(redis, msg.team, list(msg.delivery_ids)):
                log.info("duplicate_delivery", ids=list(msg.delivery_ids))
                return None
        except (RedisError, OSError) as exc:
            log.error("claim_failed", error=type(exc).__name__)
        return await self._guarded(
            thread, self._claimed(msg, thread, bot_user_id, status, on_start)
        )

    async def _claimed(
        self,
        msg: Incoming,
        thread: ThreadRef,
        bot_user_id: str,
        status: StatusFn | None,
        on_start: OnStart | None,
    ) -> Rendered:
        """`answer` once the delivery is claimed."""
        # The turn is built while the thread is marked (independent round trips).
        building = asyncio.ensure_future(self.turn_for(msg, bot_user_id))
        started: asyncio.Future[None] | None = None
        try:
            try:
                first = await self.join(thread)
            except (RedisError, OSError) as exc:
                log.error("join_failed", error=type(exc).__name__)
                first = False
            # The surface's own first calls run while the turn is built and the engine
            # starts; the answer's first Slack call waits for them.
            started = asyncio.ensure_future(on_start(first)) if on_start is not None else None
            turn = await building
            return await self.run(turn, recipient_team=msg.user_team, status=status, first=started)
        finally:
            for task in (building, started):
                if task is not None and not task.done():
                    task.cancel()

    async def join(self, thread: ThreadRef) -> bool:
        """Mark `thread` as one the bot answers in (refreshing the mark's TTL); True if it
        was not marked yet."""
        ttl = self.deps.settings.history_ttl_s
        previous = await self.deps.redis.set(keys.bot_threads(thread), "1", ex=ttl, get=True)
        return previous is None

    async def joined(self, thread: ThreadRef) -> bool:
        """True if the bot has answered in `thread` (follow-ups there need no mention)."""
        return bool(await self.deps.redis.exists(keys.bot_threads(thread)))

    async def turn_for(self, msg: Incoming, bot_user_id: str) -> Turn:
        """The engine turn for a person's message."""
        shared = msg.kind == "channel"
        wanted = mentioned_users(msg.text, bot_user_id=bot_user_id)
        names = await self.names.get(msg.team, [*wanted, msg.user] if shared else wanted)
        text = clean_input(msg.text, bot_user_id=bot_user_id, names=names)
        surface = self._surface(msg.channel, msg.thread_ts)
        files: list[SharedFile] = []
        if msg.file_ids:
            plan = await surface.prepare_files(
                [{"id": f} for f in msg.file_ids],
                inline_chars=self.deps.settings.snippet_inline_chars,
            )
            text = f"{text}\n\n{plan.note}" if text and plan.note else text or plan.note
            files = list(plan.files)
        return Turn(
            thread=ThreadRef(msg.team, msg.channel, msg.thread_ts),
            user=msg.user,
            text=text,
            speaker=names.get(msg.user, msg.user) if shared else "",
            channel_kind=msg.kind,
            thread_note=await self._note(msg.channel, msg.kind, msg.thread_ts),
            format_note=FORMAT_NOTE,
            surface=surface,
            files=files,
            rebuild=None if msg.top_level else self._rebuilder(msg, bot_user_id),
            turn_id=uuid.uuid4().hex[:12],
            order=float(msg.ts),
        )

    async def retry(
        self, team: str, user: str, channel: str, thread_ts: str, turn_id: str, bot_user_id: str
    ) -> Rendered | None:
        """Ask a failed turn's question again, as a new turn in the same thread, for `user`.
        None if the question is no longer stored."""
        thread = ThreadRef(team, channel, thread_ts)
        question = await self.records.question(thread, turn_id)
        if not question:
            return None
        return await self._guarded(thread, self._ask_again(thread, user, question, bot_user_id))

    async def _ask_again(
        self, thread: ThreadRef, user: str, question: str, bot_user_id: str
    ) -> Rendered:
        """`retry` once the question is found."""
        team, channel, thread_ts = thread.team, thread.channel, thread.thread_ts
        kind: ChannelKind = "im" if channel.startswith("D") else "channel"
        speaker = ""
        if kind == "channel":
            speaker = (await self.names.get(team, [user])).get(user, user)
        now = time.time()
        msg = Incoming(team, channel, user, question, f"{now:.6f}", thread_ts, kind, (), team)
        turn = Turn(
            thread=thread,
            user=user,
            text=question,
            speaker=speaker,
            channel_kind=kind,
            thread_note=await self._note(channel, kind, thread_ts),
            format_note=FORMAT_NOTE,
            surface=self._surface(channel, thread_ts),
            rebuild=self._rebuilder(msg, bot_user_id),
            turn_id=uuid.uuid4().hex[:12],
            order=now,
        )
        return await self.run(turn, recipient_team=team)

    async def run(
        self,
        turn: Turn,
        *,
        recipient_team: str,
        status: StatusFn | None = None,
        first: Awaitable[None] | None = None,
    ) -> Rendered:
        """Stream the engine's answer to `turn` into its thread; then handle a failure."""
        t = turn.thread
        with structlog.contextvars.bound_contextvars(
            team=t.team, channel=t.channel, thread=t.thread_ts, turn_id=turn.turn_id
        ):
            async with self.deps.busy():
                stream = AnswerStream(
                    self.client,
                    Target(t.channel, t.thread_ts, recipient_team, turn.user),
                    show_footer=self.deps.settings.show_footer,
                    interval=self.interval,
                    update_interval=self.interval * 1.5,
                    status=status,
                    first=first,
                )
                rendered = await stream.render(self.deps.engine.run(turn))
                if isinstance(rendered.end, TurnFailed):
                    await self._after_failure(turn, rendered.end)
                return rendered

    async def _guarded(self, t: ThreadRef, work: Awaitable[Rendered]) -> Rendered:
        """The Slack side's turn boundary. The engine ends its own failures with TurnFailed;
        a bug here, from building the turn to finishing its answer, is logged with its
        traceback, and the thread gets `Crashed`'s fixed sentence instead of a silent stop.
        CancelledError propagates."""
        try:
            return await work
        except Exception:
            with structlog.contextvars.bound_contextvars(
                team=t.team, channel=t.channel, thread=t.thread_ts
            ):
                log.exception("answer_crashed")
            await self._say(t, Crashed.user_message)
            return Rendered(TurnFailed(Crashed(), "", ""), "")

    async def _say(self, t: ThreadRef, text: str) -> None:
        """Post a short notice in the thread; best effort."""
        try:
            await self.client.chat_postMessage(channel=t.channel, thread_ts=t.thread_ts, text=text)
        except SLACK_ERRORS as exc:
            log.warning("notice_failed", error=slack_error_code(exc))

    # --- helpers ---------------------------------------------------------------------------

    def _surface(self, channel: str, thread_ts: str) -> SlackSurface:
        """What the tools may do in this thread: post snippets, read shared files."""
        settings = self.deps.settings
        assert settings.slack_bot_token is not None
        return SlackSurface(
            self.client,
            channel,
            thread_ts,
            settings.slack_bot_token.get_secret_value(),
            self.deps.http,
            max_bytes=settings.snippet_max_bytes,
        )

    async def _note(self, channel: str, kind: ChannelKind, thread_ts: str) -> str:
        day = datetime.fromtimestamp(float(thread_ts), UTC).date()
        if kind == "assistant":
            return thread_note(day, "the Slack assistant pane")
        if kind == "im":
            return thread_note(day, "a direct message")
        return thread_note(day, await self._channel_name(channel))

    async def _channel_name(self, channel: str) -> str:
        name = self._channel_names.get(channel)
        if name is None:
            try:
                resp = await self.client.conversations_info(channel=channel)
                info = resp.get("channel") or {}
                raw = info.get("name")
                name = f"#{raw}" if isinstance(raw, str) and raw else "a Slack channel"
                if len(self._channel_names) > 10_000:
                    self._channel_names.clear()
                self._channel_names[channel] = name
            except SLACK_ERRORS as exc:
                log.info("conversations_info_failed", error=slack_error_code(exc))
                name = "a Slack channel"
        return name

    def _rebuilder(self, msg: Incoming, bot_user_id: str) -> Callable[[], Awaitable[list[Any]]]:
        async def rebuild() -> list[dict[str, Any]]:
            return await self._replies(msg, bot_user_id)

        return rebuild

    async def _replies(self, msg: Incoming, bot_user_id: str) -> list[dict[str, Any]]:
        """The thread before `msg`, as Slack shows it: the bot's messages as the assistant,
        everyone else as the user (named in shared channels). Empty if Slack refuses."""
        raw: list[dict[str, Any]] = []
        cursor = None
        try:
            for _ in range(REBUILD_PAGES):
                resp = await self.client.conversations_replies(
                    channel=msg.channel, ts=msg.thread_ts, limit=200, cursor=cursor
                )
                raw += [m for m in resp.get("messages") or [] if isinstance(m, dict)]
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not resp.get("has_more") or not cursor:
                    break
        except SLACK_ERRORS as exc:
            log.warning("rebuild_failed", error=slack_error_code(exc))
            return []
        earlier = [m for m in raw if _before(m.get("ts"), msg.ts)]
        shared = msg.kind == "channel"
        people = [str(m.get("user")) for m in earlier if m.get("user") and shared]
        mentioned = [u for m in earlier for u in mentioned_users(str(m.get("text") or ""))]
        names = await self.names.get(msg.team, [*people, *mentioned])
        out: list[dict[str, Any]] = []
        for m in earlier:
            text = str(m.get("text") or "")
            if m.get("user") == bot_user_id:
                out.append({"role": "assistant", "content": text})
                continue
            if m.get("bot_id") and self.deps.settings.ignore_other_bots:
                continue
            clean = clean_input(text, bot_user_id=bot_user_id, names=names)
            who = names.get(str(m.get("user")), str(m.get("user") or "someone"))
            out.append({"role": "user", "content": f"{who}: {clean}" if shared else clean})
        return out

    async def _after_failure(self, turn: Turn, failed: TurnFailed) -> None:
        """Keep the question for "Retry"; tell the admins when they must act."""
        t = turn.thread
        try:
            await self.records.save_failure(
                t, failed.turn_id or turn.turn_id, question=turn.text, user=turn.user
            )
        except (RedisError, OSError) as exc:
            log.warning("retry_store_failed", error=type(exc).__name__)
        if failed.error.notify_admins:
            await self.admins.notify_failure(t, failed.error)


def _before(ts: Any, limit: str) -> bool:
    try:
        return float(ts) < float(limit)
    except (TypeError, ValueError):
        return False
