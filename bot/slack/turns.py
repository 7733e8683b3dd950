"""From a Slack message to a finished answer in its thread: what every Slack surface shares.

`SlackTurns.answer` takes a parsed message (`incoming.Incoming`) and:
1. claims the delivery once across retries and replicas (`claims.claim_once` on the event id
   and the client message id);
2. marks the thread as one the bot answers in (follow-ups need no mention);
3. builds the engine `Turn`: text cleaned (`format.clean_input`) with display names
   from a Redis cache (`keys.display_name`, `NAME_TTL_S`), shared files prepared by the
   thread's `SlackSurface` (small text files inlined, the rest for `read_snippet`), the thread
   note (date and place, used by the engine only where a thread starts), Slack's formatting
   note, and a `rebuild` callback that reads the thread from Slack (`conversations.replies`)
   if Redis has no history;
4. streams `Engine.run(turn)` into the thread (`stream.AnswerStream`) inside
   `deps.busy()`, with team, channel, thread and turn id bound to every log line;
5. after a failed turn, keeps its question for "Retry" and, for failures an admin must fix
   (`notify_admins`), DMs ADMIN_USER_IDS at most once an hour per kind (`keys.notice`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.errors import Crashed, UpstreamError
from bot.contracts.events import TurnFailed
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import SharedFile
from bot.core.engine import Turn
from bot.core.prompt import thread_note
from bot.services import Deps
from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.slack.format import FORMAT_NOTE, clean_input, mentioned_users
from bot.slack.incoming import ChannelKind, Incoming
from bot.slack.stream import (
    AnswerStream,
    Rendered,
    StatusFn,
    Target,
)
from bot.slack.surface import SlackSurface
from bot.store import keys
from bot.store.claims import claim_once
from bot.store.turns import TurnStore

log = structlog.get_logger(__name__)

NAME_TTL_S = 86_400  # display names change rarely; a day-old name is fine
NOTICE_TTL_S = 3_600  # one admin DM per kind of failure per hour
REBUILD_PAGES = 5  # conversations.replies pages read when rebuilding a thread (200 each)

# Called once a delivery is claimed, with True if the bot had not answered in the thread yet.
OnStart = Callable[[bool], Awaitable[None]]


class DisplayNames:
    """Display names by user id, cached in Redis; `users.info` on a miss."""

    def __init__(self, redis: Redis, client: AsyncWebClient) -> None:
        self.redis = redis
        self.client = client

    async def get(self, team: str, users: Sequence[str]) -> dict[str, str]:
        """Names for `users` (one Redis round trip when all are cached). A user Slack does
        not know keeps no name (callers fall back to the markup's label or the id)."""
        users = list(dict.fromkeys(u for u in users if u))
        if not users:
            return {}
        try:
            cached = await self.redis.mget([keys.display_name(team, u) for u in users])
        except (RedisError, OSError):
            cached = [None] * len(users)  # the store is down: ask Slack, the turn goes on
        names = {u: str(n) for u, n in zip(users, cached, strict=True) if n}
        missing = [u for u in users if u not in names]
        if missing:
            found = await asyncio.gather(*(self._fetch(u) for u in missing))
            fresh = {u: n for u, n in zip(missing, found, strict=True) if n}
            if fresh:
                pipe = self.redis.pipeline(transaction=False)
                for user, name in fresh.items():
                    pipe.set(keys.display_name(team, user), name, ex=NAME_TTL_S)
                with contextlib.suppress(RedisError, OSError):
                    await pipe.execute()
            names.update(fresh)
        return names

    async def _fetch(self, user: str) -> str:
        try:
            resp = await self.client.users_info(user=user)
        except SLACK_ERRORS as exc:
            log.info("users_info_failed", error=slack_error_code(exc))
            return ""
        info = resp.get("user") or {}
        profile = info.get("profile") or {}
        for name in (profile.get("display_name"), profile.get("real_name"), info.get("name")):
            if isinstance(name, str) and name.strip():
                return name.strip()
        return ""


class SlackTurns:
    def __init__(self, deps: Deps, records: TurnStore) -> None:
        assert deps.slack is not None
        self.deps = deps
        self.records = records
        self.client: AsyncWebClient = deps.slack
        self.names = DisplayNames(deps.redis, deps.slack)
        self.interval = deps.settings.slack_update_interval
        self._channel_names: dict[str, str] = {}  # per process: channels are rarely renamed
        self._noticed: dict[tuple[str, str], float] = {}  # (team, kind) -> last admin notice

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
        ttl = self.deps.settings.history_ttl_days * 86_400
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
        """Stream the engine's answer to `turn` into its thread; then handle a failure.

        The Slack side's turn boundary: the engine turns its own failures into TurnFailed;
        an exception from rendering (a bug) is logged with its traceback, and the thread gets
        `Crashed`'s fixed sentence instead of a silent stop."""
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
                try:
                    rendered = await stream.render(self.deps.engine.run(turn))
                except Exception:
                    log.exception("answer_crashed")
                    await self._say(t, Crashed.user_message)
                    return Rendered(TurnFailed(Crashed(), "", turn.turn_id), "")
                if isinstance(rendered.end, TurnFailed):
                    await self._after_failure(turn, rendered.end)
                return rendered

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
            await self._notify_admins(t, failed.error)

    async def _notify_admins(self, t: ThreadRef, error: UpstreamError) -> None:
        kind = type(error).__name__
        admins = sorted(self.deps.settings.admin_user_ids)
        if not admins:
            return
        # Once an hour per kind across replicas (Redis); this process's own memory keeps
        # the promise for itself while Redis is down (StoreDown is one such kind).
        now = time.monotonic()
        last = self._noticed.get((t.team, kind))
        if last is not None and now - last < NOTICE_TTL_S:
            return
        try:
            first = await self.deps.redis.set(
                keys.notice(t.team, f"upstream:{kind}"), "1", nx=True, ex=NOTICE_TTL_S
            )
        except (RedisError, OSError):
            first = True
        self._noticed[(t.team, kind)] = now
        if not first:
            return
        status = f", HTTP {error.status}" if error.status else ""
        text = (
            f"DeepSeek answers are failing in <#{t.channel}>: {error.user_message} "
            f"({kind}{status}; details in the bot's logs). "
            "I will not repeat this notice for an hour."
        )
        for admin in admins:
            try:
                dm = await self.client.conversations_open(users=admin)
                await self.client.chat_postMessage(channel=dm["channel"]["id"], text=text)
            except SLACK_ERRORS as exc:
                log.warning("admin_notice_failed", error=slack_error_code(exc))
        log.info("admin_notice_sent", kind=kind, admins=len(admins))


def _before(ts: Any, limit: str) -> bool:
    try:
        return float(ts) < float(limit)
    except (TypeError, ValueError):
        return False
