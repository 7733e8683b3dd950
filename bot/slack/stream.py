"""Renders one turn's engine events into a Slack thread.

Native streaming first (`client.chat_stream`: chat.startStream / appendStream / stopStream,
with the recipient ids channels require). The first words go out as soon as they arrive;
after that, text and progress are batched so an answer makes at most one call per `interval`
(and one final call when the turn ends). Reasoning is not shown: a "Thinking…" task stands in
for it; tool calls appear as tasks with the engine's label.

If streaming is unavailable or breaks (`message_not_in_streaming_state` after an expiry, a
method error, a network error), the rest of the answer continues in a new message through
`chat.postMessage` and throttled `chat.update` calls.

Long answers continue in new messages at clean boundaries (`format.cut_after`) before
a message reaches Slack's limits. Every turn ends in a finished message: the answer with the
feedback buttons (and "Show reasoning", and the optional footer), or what was shown with a
notice that it was cut off, or the error's `user_message` — with a "Retry" button.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from slack_sdk.models.messages.chunk import TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.errors import Crashed
from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.stream import ReasoningDelta, TextDelta
from bot.slack.blocks import Block, TurnRef, answer_end, failure_end, markdown
from bot.slack.errors import SLACK_ERRORS, slack_error_code
from bot.slack.format import FENCE_RESERVE, chunks_of, close_fence, cut_after, footer, open_fence

log = structlog.get_logger(__name__)

StatusFn = Callable[[str], Awaitable[None]]

EMPTY_ANSWER = "_DeepSeek returned an empty answer._"


@dataclass(frozen=True, slots=True)
class Limits:
    """Slack's size limits, with room for a closing fence and notices."""

    stream_call: int = 12_000  # markdown_text of one start/append/stopStream call
    stream_message: int = 38_000  # one streamed message (Slack truncates past 40,000)
    post_message: int = 3_800  # one posted message that chat.update may rewrite (~4,000)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the answer goes and who asked (streams in channels need the recipient)."""

    channel: str
    thread_ts: str
    team: str
    user: str


@dataclass(slots=True)
class Rendered:
    """What the thread shows once `render` returns."""

    end: TurnDone | TurnFailed
    text: str  # the answer text as streamed (notices not included)
    messages: list[str] = field(default_factory=list)  # ts of every message of the answer
    fell_back: bool = False  # native streaming failed; the rest was posted
    delivered: bool = True  # False if Slack refused even the fallback's last message


class _StreamBroken(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class AnswerStream:
    """One answer in one thread. Use once: `await AnswerStream(...).render(events)`."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        *,
        show_footer: bool = False,
        interval: float = 1.0,
        update_interval: float = 1.5,
        limits: Limits | None = None,
        status: StatusFn | None = None,
        first: Awaitable[None] | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.show_footer = show_footer
        self.interval = interval
        self.update_interval = update_interval
        self.limits = limits or Limits()
        self.status = status
        # Slack calls that must land before this answer's own (the assistant pane's status
        # and title): they run while the engine works, and the first output waits for them.
        self._first = first
        self._mode: Literal["stream", "post"] = "stream"
        self._stream: AsyncChatStream | None = None
        self._ts: str | None = None  # the message being written
        self._shown = ""  # text of the message being written
        self._pending = ""  # text not yet sent
        self._answer = ""  # every answer text delta, as received
        self._tasks: dict[str, TaskUpdateChunk] = {}  # task states not yet sent
        self._running: dict[str, str] = {}  # tasks in progress: id -> title
        self._activity = ""  # post mode: what is happening now, shown under the text
        self._activity_shown = ""
        self._thinking: str | None = None  # id of the "Thinking…" task while it runs
        self._thinking_since = 0.0
        self._phases = 0
        self._next_at = 0.0  # monotonic time the next batched call may go
        self._messages: list[str] = []
        self._fell_back = False
        self._delivered = True
        self._text_out = False  # a flush with answer text was made (or tried)
        self._sleeping = False  # render() waits for a batched call that is due later

    # --- driving -----------------------------------------------------------------------

    async def render(self, events: AsyncIterator[EngineEvent]) -> Rendered:
        """Consume `events` (an `Engine.run` stream) and show them. Returns when the turn's
        last message is finished. Cancelling it stops consuming `events` (the engine then
        stores what arrived as interrupted)."""
        # The engine runs in its own task and drops events here. This task wakes only when
        # there is something to do: a new kind of event, the first words, or a batched
        # call falling due; not once per token (see `_wants`).
        inbox: deque[EngineEvent | None] = deque()
        wake = asyncio.Event()

        async def pump() -> None:
            try:
                async for event in events:
                    inbox.append(event)
                    if self._wants(event):
                        wake.set()
            finally:
                inbox.append(None)
                wake.set()

        pumping = asyncio.create_task(pump())
        try:
            end: TurnDone | TurnFailed | None = None
            while end is None:
                if inbox:
                    event = inbox.popleft()
                    if event is None:
                        end = self._engine_stopped(pumping)
                    else:
                        end = await self._apply(event)
                elif not (self._dirty() and self._due()):
                    await self._wait(wake)
                    continue
                if end is None and self._dirty() and self._due():
                    await self._flush()
            await self._finish(end)
        except BaseException:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
            raise
        # The engine releases the thread after its last event: let it, never cancel that.
        await asyncio.gather(pumping, return_exceptions=True)
        return Rendered(end, self._answer, list(self._messages), self._fell_back, self._delivered)

    async def _wait(self, wake: asyncio.Event) -> None:
        """Sleep until an event needs the renderer or, with output waiting, until the next
        batched call is due."""
        wake.clear()
        self._sleeping = self._dirty()
        try:
            if self._sleeping:
                async with asyncio.timeout(max(0.0, self._next_at - time.monotonic())):
                    await wake.wait()
            else:
                await wake.wait()
        except TimeoutError:
            pass
        finally:
            self._sleeping = False

    def _wants(self, event: EngineEvent) -> bool:
        """Whether `event` must wake the renderer. More answer text need not while a batched
        call is already scheduled (it goes with that call), nor more reasoning while the
        "Thinking…" task already shows."""
        if type(event) is TextDelta:
            return not self._sleeping
        if type(event) is ReasoningDelta:
            return self._thinking is None
        return True

    def _engine_stopped(self, pumping: asyncio.Task[None]) -> TurnFailed:
        """The engine's stream ended without TurnDone/TurnFailed (a bug: `Engine.run` always
        ends with one): logged with its traceback, shown as `Crashed`."""
        exc = pumping.exception() if pumping.done() and not pumping.cancelled() else None
        log.error(
            "engine_stream_ended", error=type(exc).__name__ if exc else "no_end_event", exc_info=exc
        )
        return TurnFailed(Crashed("engine stream ended"), self._answer, "")

    async def _apply(self, event: EngineEvent) -> TurnDone | TurnFailed | None:
        if isinstance(event, TextDelta):
            self._end_thinking()
            self._pending += event.text
            self._answer += event.text
            self._activity = ""
        elif isinstance(event, ReasoningDelta):
            if self._thinking is None:
                self._phases += 1
                self._thinking = f"thinking-{self._phases}"
                self._thinking_since = time.monotonic()
                self._task(self._thinking, "Thinking…", "in_progress")
                self._activity = "Thinking…"
        elif isinstance(event, ToolStarted):
            self._end_thinking()
            self._task(event.call_id, event.label, "in_progress")
            self._activity = f"{event.label}…"
            await self._set_status(event.label)
        elif isinstance(event, ToolFinished):
            self._task(event.call_id, event.label, "complete" if event.ok else "error")
            if self._activity == f"{event.label}…":
                self._activity = ""
        else:
            return event
        return None

    def _task(self, task_id: str, title: str, status: str) -> None:
        self._tasks[task_id] = TaskUpdateChunk(id=task_id, title=title, status=status)
        if status == "in_progress":
            self._running[task_id] = title
        else:
            self._running.pop(task_id, None)

    def _end_thinking(self) -> None:
        if self._thinking is not None:
            seconds = max(1, round(time.monotonic() - self._thinking_since))
            self._task(self._thinking, f"Thought for {seconds} s", "complete")
            self._thinking = None

    async def _set_status(self, label: str) -> None:
        if self.status is None:
            return
        await self._after_first()
        try:
            await self.status(f"is {label[:1].lower()}{label[1:]}…")
        except SLACK_ERRORS as exc:
            log.info("set_status_failed", error=slack_error_code(exc))

    def _due(self) -> bool:
        """Batched output may go now; the answer's first words always go at once."""
        first_words = self._ready() > 0 and not self._text_out
        return first_words or time.monotonic() >= self._next_at

    def _ready(self) -> int:
        """How much of `_pending` may be shown now: all of it, except near the end of a
        message, where the tail waits until the message is full so that it can end at a clean
        boundary (text already shown cannot be moved to the next message)."""
        limit = self._limit()
        total = len(self._shown) + len(self._pending)
        soft = limit - limit // 10
        if total <= soft or total > limit - FENCE_RESERVE:
            return len(self._pending)
        return max(0, soft - len(self._shown))

    def _limit(self) -> int:
        return self.limits.stream_message if self._mode == "stream" else self.limits.post_message

    def _dirty(self) -> bool:
        if self._ready():
            return True
        if self._mode == "stream":
            return bool(self._tasks)
        return self._activity != self._activity_shown

    # --- output ------------------------------------------------------------------------

    async def _finish(self, end: TurnDone | TurnFailed) -> None:
        ref = TurnRef(self.target.channel, self.target.thread_ts, end.turn_id)
        if isinstance(end, TurnDone):
            self._end_thinking()
            ref = TurnRef(ref.channel, ref.thread_ts, ref.turn_id, end.model)
            if not self._answer.strip():
                self._pending += EMPTY_ANSWER
            line = None
            if self.show_footer:
                line = footer(end.model, end.thinking, end.usage, end.cost_micros)
            blocks = answer_end(ref, reasoning=bool(end.reasoning.strip()), footer=line)
        else:
            for task_id, title in list(self._running.items()):
                self._task(task_id, title, "error")
            self._thinking = None
            notice = f"_{end.error.user_message}_"
            if self._answer.strip():
                self._pending += close_fence(self._shown + self._pending) + "\n\n" + notice
            else:
                self._pending += notice
            blocks = failure_end(ref)
        self._activity = ""
        await self._flush(final=True, end_blocks=blocks)

    async def _after_first(self) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            try:
                await first
            except Exception:  # the caller's calls are best effort; the answer goes on
                log.exception("first_calls_failed")

    async def _flush(self, *, final: bool = False, end_blocks: list[Block] | None = None) -> None:
        await self._after_first()
        self._text_out = self._text_out or self._ready() > 0
        if self._mode == "stream":
            try:
                await self._flush_stream(final, end_blocks)
                return
            except _StreamBroken as broken:
                await self._close_broken(broken.cause)
                self._fall_back(broken.cause)
        await self._flush_post(final, end_blocks)

    async def _close_broken(self, cause: BaseException) -> None:
        """Best effort: end a stream that broke for another reason than expiry, so Slack
        does not show it as still being written until it expires."""
        if self._ts is None or slack_error_code(cause) == "message_not_in_streaming_state":
            return
        try:
            await self.client.chat_stopStream(channel=self.target.channel, ts=self._ts)
        except SLACK_ERRORS as exc:
            log.info("broken_stream_stop_failed", error=slack_error_code(exc))

    def _fall_back(self, cause: BaseException) -> None:
        """Native streaming is over for this answer; the rest goes into a new message."""
        log.warning("stream_fallback", error=slack_error_code(cause), stream_ts=self._ts)
        fence = open_fence(self._shown)
        self._mode = "post"
        self._fell_back = True
        self._stream = None
        self._new_message()
        self._tasks.clear()
        if fence is not None:
            self._pending = f"{fence}\n{self._pending}"

    def _new_message(self) -> None:
        self._stream = None
        self._ts = None
        self._shown = ""
        self._activity_shown = ""

    def _spent(self, interval: float) -> None:
        """A batched call was made (or tried): the next may go `interval` from now."""
        self._next_at = time.monotonic() + interval

    # --- native streaming ----------------------------------------------------------------

    async def _flush_stream(self, final: bool, end_blocks: list[Block] | None) -> None:
        limit = self.limits.stream_message
        while len(self._shown) + len(self._pending) > limit - FENCE_RESERVE:
            cut = cut_after(self._shown, self._pending, limit)
            rest = cut.rest(self._pending)
            await self._send_stream(cut.take, cut.close, stop=True, blocks=None)
            self._pending = rest
            self._new_message()
        if final:
            await self._send_stream(len(self._pending), "", stop=True, blocks=end_blocks)
        elif self._ready() or self._tasks:
            await self._send_stream(self._ready(), "", stop=False, blocks=None)
        self._spent(self.interval)

    async def _send_stream(
        self, take: int, close: str, *, stop: bool, blocks: list[Block] | None
    ) -> None:
        """Send `self._pending[:take]` (then `close`) to the current streamed message, in
        calls within Slack's per-call limit; stop the stream with `blocks` if `stop`. Sent
        text leaves `_pending` as each call succeeds; raises _StreamBroken on any failure."""
        # (text, taken from _pending?) — a closing fence is sent but was never pending.
        pieces = [(p, True) for p in chunks_of(self._pending[:take], self.limits.stream_call)]
        pieces = pieces if take else []
        if close:
            pieces.append((close, False))
        last = pieces.pop() if stop and pieces else None
        try:
            if self._stream is None:
                t = self.target
                self._stream = await self.client.chat_stream(
                    channel=t.channel,
                    thread_ts=t.thread_ts,
                    recipient_team_id=t.team,
                    recipient_user_id=t.user,
                    buffer_size=1,  # every append is a call: the batching is ours
                )
            for n, (piece, pending) in enumerate(pieces):
                await self._stream.append(markdown_text=piece, chunks=self._take_tasks(n == 0))
                self._sent(piece, from_pending=pending)
            if not pieces and not stop and self._tasks:
                await self._stream.append(chunks=self._take_tasks(True))
            if stop:
                await self._stream.stop(
                    markdown_text=last[0] if last else None,
                    chunks=self._take_tasks(True),
                    blocks=blocks,
                )
                if last:
                    self._sent(last[0], from_pending=last[1])
        except SLACK_ERRORS as exc:
            raise _StreamBroken(exc) from exc
        finally:
            if self._stream is not None and self._stream.ts and self._ts is None:
                self._ts = self._stream.ts
                self._messages.append(self._ts)

    def _take_tasks(self, take: bool) -> list[Any] | None:
        if not take or not self._tasks:
            return None
        tasks = list(self._tasks.values())
        self._tasks.clear()
        return tasks

    def _sent(self, piece: str, *, from_pending: bool) -> None:
        self._shown += piece
        if from_pending:
            self._pending = self._pending[len(piece) :]

    # --- fallback: post and update ---------------------------------------------------------

    async def _flush_post(self, final: bool, end_blocks: list[Block] | None) -> None:
        self._spent(self.update_interval)
        limit = self.limits.post_message
        while len(self._shown) + len(self._pending) > limit - FENCE_RESERVE:
            cut = cut_after(self._shown, self._pending, limit)
            if not await self._put(cut.head(self._pending), "", None):
                self._undeliverable(final)
                return
            self._pending = cut.rest(self._pending)
            self._new_message()
        activity = "" if final else self._activity
        take = len(self._pending) if final else self._ready()
        if await self._put(self._pending[:take], activity, end_blocks if final else None):
            self._pending = self._pending[take:]
            self._activity_shown = activity
        else:
            self._undeliverable(final)

    def _undeliverable(self, final: bool) -> None:
        if final:
            self._delivered = False
            log.error("answer_undeliverable", channel=self.target.channel)

    async def _put(self, new: str, activity: str, end_blocks: list[Block] | None) -> bool:
        """Show `new` after what the current message shows, with `activity` under it: a
        chat.update of the message, or a new message if there is none or the update is
        refused. False if Slack refused the new message too (nothing changed)."""
        if self._ts is not None:
            text = self._shown + new
            try:
                await self.client.chat_update(
                    channel=self.target.channel,
                    ts=self._ts,
                    **_message_args(text, activity, end_blocks),
                )
                self._shown = text
                return True
            except SLACK_ERRORS as exc:
                log.warning("update_failed", error=slack_error_code(exc))
                self._new_message()
        try:
            resp = await self.client.chat_postMessage(
                channel=self.target.channel,
                thread_ts=self.target.thread_ts,
                **_message_args(new, activity, end_blocks),
            )
        except SLACK_ERRORS as exc:
            log.warning("post_failed", error=slack_error_code(exc))
            return False
        self._ts = str(resp["ts"])
        self._shown = new
        self._messages.append(self._ts)
        return True


def _message_args(text: str, activity: str, end_blocks: list[Block] | None) -> dict[str, Any]:
    """A posted message: the Markdown as a markdown block (Slack renders it), the same text
    as the notification fallback, what is happening now in italics under it, and the
    closing blocks on the last message."""
    if activity:
        text = f"{text}{close_fence(text)}\n\n_{activity}_" if text.strip() else f"_{activity}_"
    blocks = [markdown(text)] if text.strip() else []
    blocks += end_blocks or []
    return {"text": text.strip() or "Answer finished.", "blocks": blocks}
