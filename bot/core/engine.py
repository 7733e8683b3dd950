"""The conversation engine: one turn of a thread, from a person's message to a stored answer.

Surfaces (Slack handlers, the terminal) build a `Turn` and consume `Engine.run(turn)`; the
engine owns ordering (thread lock), memory (Redis history), the model's tool loop, usage
recording and what is stored when a turn fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import ModelTier, Settings
from bot.contracts.errors import Crashed, LengthExceeded, OverBudget, StoreDown, UpstreamError
from bot.contracts.events import EngineEvent, ToolFinished, ToolStarted, TurnDone, TurnFailed
from bot.contracts.messages import Message
from bot.contracts.stream import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCall, Usage
from bot.contracts.thread import ThreadRef
from bot.contracts.tool import SharedFile, Surface, Tool, ToolContext, ToolFailure
from bot.core import prompt
from bot.deepseek.client import DeepSeekClient
from bot.deepseek.pricing import PriceTable, billed_input
from bot.store.history import History
from bot.store.prefs import Prefs, TurnSettings
from bot.store.thread_lock import thread_turn
from bot.store.turns import TurnStore
from bot.usage.ledger import Ledger
from bot.usage.recorder import UsageRecord

log = structlog.get_logger(__name__)

# Rebuilds a thread's earlier messages (as {"role", "content"} dicts) when Redis has none.
Rebuild = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Turn:
    thread: ThreadRef
    user: str
    text: str  # cleaned text (mentions resolved, small shared files already inlined)
    speaker: str = ""  # display name; threads with several people see "Name: text"
    channel_kind: str = "channel"  # channel | im | assistant | terminal
    thread_note: str = ""  # facts stored once when a thread starts (date, channel name)
    format_note: str = ""  # the surface's formatting rules; part of the stable system prompt
    surface: Surface | None = None
    files: list[SharedFile] = field(default_factory=list)
    rebuild: Rebuild | None = None
    turn_id: str = ""  # set by the engine when empty
    order: float = 0.0  # the message's position (Slack ts); turns in a thread run in order


@dataclass(slots=True)
class _Progress:
    """What a turn has produced so far: what is stored if it fails, and what its `turn_end`
    log line reports."""

    stored: list[Message] = field(default_factory=list)
    text: str = ""  # all answer text shown, across rounds
    pending: str = ""  # text of the current round, not yet in `stored`
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)
    cost: int = 0
    calibration: tuple[int, int] | None = None
    model: str = ""  # the model id asked, once the turn's settings are read
    tools: list[str] = field(default_factory=list)  # names of the tools called, in order
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None

    def log_end(self, outcome: str) -> None:
        """The turn's one summary line: tokens by kind (input as billed), cost, model, tools,
        latency. Never message text."""
        hit, miss = billed_input(self.usage)
        log.info(
            "turn_end",
            outcome=outcome,
            model=self.model,
            tokens_hit=hit,
            tokens_miss=miss,
            tokens_output=self.usage.completion,
            tokens_reasoning=self.usage.reasoning,
            cost_micros=self.cost,
            tool_calls=len(self.tools),
            tools=",".join(dict.fromkeys(self.tools)),
            first_text_ms=None if self.first_text_at is None else self._ms(self.first_text_at),
            duration_ms=self._ms(time.perf_counter()),
        )

    def _ms(self, at: float) -> int:
        return int((at - self.started) * 1000)


class Engine:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        client: DeepSeekClient,
        tools: list[Tool[Any]],
        prices: PriceTable,
        prefs: Prefs,
        ledger: Ledger,
        records: TurnStore,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.client = client
        self.tools = tools
        self.prices = prices
        self.prefs = prefs
        self.ledger = ledger
        self.http = http
        self.records = records
        self.history = History(redis, settings.history_ttl_s)
        self._by_name = {t.name: t for t in tools}
        # Serialised once: tool schemas are part of the cached prompt prefix.
        self._schemas = [t.schema() for t in tools]

    async def run(self, turn: Turn) -> AsyncIterator[EngineEvent]:
        """Run one turn: wait for the thread's earlier turns, stream the answer (with tool
        rounds) as events, store the turn, record usage. Always ends with TurnDone or
        TurnFailed, and logs one `turn_end` line. If the consumer stops early (cancel or
        aclose), what arrived is stored as an interrupted answer before the generator exits.

        This is the turn's boundary: any other exception (a bug) is logged with its traceback
        and becomes `TurnFailed(Crashed())`, whose fixed sentence the surface shows.
        `CancelledError` propagates."""
        turn_id = turn.turn_id or uuid.uuid4().hex[:12]
        progress = _Progress()
        outcome = "stopped"  # the consumer went away before the turn's last event
        with structlog.contextvars.bound_contextvars(turn_id=turn_id):
            try:
                async for event in self._guarded(turn, turn_id, progress):
                    if isinstance(event, TurnDone):
                        outcome = "done"
                    elif isinstance(event, TurnFailed):
                        outcome = type(event.error).__name__
                    yield event
            finally:
                progress.log_end(outcome)

    async def _guarded(
        self, turn: Turn, turn_id: str, progress: _Progress
    ) -> AsyncIterator[EngineEvent]:
        """The turn inside the thread's lock, every failure turned into TurnFailed."""
        wait_s = self.settings.deepseek_total_timeout + 60
        try:
            async with thread_turn(
                self.redis,
                turn.thread,
                turn_id,
                turn.order or time.time(),
                wait_s,
                ttl_s=self.settings.thread_lock_ttl,
            ):
                async for event in self._locked(turn, turn_id, progress):
                    yield event
        except UpstreamError as exc:  # waiting for the thread timed out
            yield TurnFailed(exc, "", turn_id)
        except (RedisError, OSError) as exc:
            log.error("store_error", error=type(exc).__name__)
            yield TurnFailed(StoreDown(type(exc).__name__), progress.text, turn_id, progress.usage)
        except Exception:
            log.exception("turn_crashed")
            yield TurnFailed(Crashed(), progress.text, turn_id, progress.usage)

    async def _locked(
        self, turn: Turn, turn_id: str, progress: _Progress
    ) -> AsyncIterator[EngineEvent]:
        t = turn.thread
        # Independent reads, concurrently: one round trip's wait instead of three.
        state, prefs, verdict = await asyncio.gather(
            self.history.load(t),
            self.prefs.effective(t.team, t.channel, turn.user),
            self.ledger.budgets.verdict(t.team, turn.user),
        )
        history = state.messages
        if not history and turn.rebuild is not None:
            history = prompt.normalise_rebuilt(await turn.rebuild())
            if history:
                await self.history.replace(t, history)
                log.info("history_rebuilt", messages=len(history))
        if verdict == "refuse":
            yield TurnFailed(OverBudget(), "", turn_id)
            return
        tier: ModelTier = "flash" if verdict == "flash" else prefs.model
        progress.model = self.settings.model_id(tier)

        system = prompt.system_message(turn.format_note)
        question = prompt.user_message(
            turn.text,
            speaker=turn.speaker if turn.channel_kind == "channel" else "",
            thread_note=turn.thread_note if not history else "",
        )
        if self._too_big([system, *history, question], state.calibration):
            history = prompt.trim(history)
            await self.history.replace(t, history)
            log.info("history_trimmed", kept=len(history))

        progress.stored.append(question)
        try:
            async for event in self._rounds(turn, tier, prefs, [system, *history], progress):
                yield event
        except UpstreamError as exc:
            await self._store_interrupted(t, progress, exc.user_message)
            yield TurnFailed(exc, progress.text, turn_id, progress.usage)
            return
        except BaseException:
            # The consumer went away (Ctrl-C, shutdown) or a bug (`run` turns it into
            # Crashed): keep what was shown, then stop.
            await asyncio.shield(self._store_interrupted(t, progress, "stopped"))
            raise
        await self.history.append(t, progress.stored, calibration=progress.calibration)
        await self.records.save_answer(
            t, turn_id, question=turn.text, reasoning=progress.reasoning, model=tier
        )
        yield TurnDone(
            progress.text,
            progress.reasoning,
            progress.model,
            prefs.thinking,
            progress.usage,
            progress.cost,
            turn_id,
        )

    async def _rounds(
        self,
        turn: Turn,
        tier: ModelTier,
        prefs: TurnSettings,
        head: list[Message],
        progress: _Progress,
    ) -> AsyncIterator[EngineEvent]:
        """Call the model, run the tools it asks for, feed results back; the last round is
        sent without tools so the model must answer."""
        model = progress.model
        rounds = self.settings.max_tool_rounds
        for round_no in range(rounds + 1):
            tools = self._schemas if round_no < rounds else []
            messages = [*head, *progress.stored]
            reasoning, calls, finish = "", [], None
            progress.pending = ""
            stream = self.client.stream(
                model=model,
                messages=messages,
                tools=tools,
                thinking=prefs.thinking,
                effort=prefs.effort,
                max_tokens=self.settings.deepseek_max_tokens,
            )
            async for ev in self._billed(stream, turn, tier, model, prefs.thinking, progress):
                if isinstance(ev, TextDelta):
                    if progress.first_text_at is None:
                        progress.first_text_at = time.perf_counter()
                    progress.text += ev.text
                    progress.pending += ev.text
                    yield ev
                elif isinstance(ev, ReasoningDelta):
                    reasoning += ev.text
                    progress.reasoning += ev.text
                    yield ev
                elif isinstance(ev, ToolCall):
                    calls.append(ev)
                elif isinstance(ev, Finish):
                    finish = ev
            if finish is not None and finish.usage is not None:
                if round_no == 0:
                    chars = prompt.request_chars(messages, tools)
                    progress.calibration = (finish.usage.prompt, chars)
                await self._record(turn, tier, model, prefs.thinking, finish.usage, progress)
            # The round's text moves from `pending` into `stored` with no await in between.
            text, progress.pending = progress.pending, ""
            if not calls:
                progress.stored.append(prompt.assistant_message(text, reasoning))
                if finish is not None and finish.reason == "length":
                    raise LengthExceeded("finish_reason=length")
                return
            progress.stored.append(prompt.assistant_message(text, reasoning, calls))
            async for tool_event in self._run_tools(turn, calls, progress):
                yield tool_event

    async def _run_tools(
        self, turn: Turn, calls: list[ToolCall], progress: _Progress
    ) -> AsyncIterator[EngineEvent]:
        """Run a round's calls concurrently; results are stored in the calls' order."""
        ctx = ToolContext(
            thread=turn.thread,
            user=turn.user,
            settings=self.settings,
            http=self.http,
            surface=turn.surface,
            files=list(turn.files),
        )
        labels = {c.id: self._label(c) for c in calls}
        progress.tools.extend(c.name for c in calls)
        for c in calls:
            yield ToolStarted(c.id, c.name, labels[c.id])
        queue: asyncio.Queue[tuple[ToolCall, str, bool, int]] = asyncio.Queue()

        async def one(call: ToolCall) -> None:
            start = time.perf_counter()
            result, ok = await self._call_tool(call, ctx)
            await queue.put((call, result, ok, int((time.perf_counter() - start) * 1000)))

        tasks = [asyncio.create_task(one(c)) for c in calls]
        results: dict[str, str] = {}
        try:
            for _ in calls:
                call, result, ok, ms = await queue.get()
                results[call.id] = result
                yield ToolFinished(call.id, call.name, labels[call.id], ok, ms)
        finally:
            for task in tasks:
                task.cancel()
        progress.stored.extend(prompt.tool_message(c.id, results[c.id]) for c in calls)

    async def _billed(
        self,
        stream: AsyncIterator[StreamEvent],
        turn: Turn,
        tier: ModelTier,
        model: str,
        thinking: bool,
        progress: _Progress,
    ) -> AsyncIterator[StreamEvent]:
        """Pass a stream through; a call that fails after the gateway billed it (a content
        filter stop) is still recorded in the ledger."""
        try:
            async for ev in stream:
                yield ev
        except UpstreamError as exc:
            if exc.usage is not None:
                await self._record(turn, tier, model, thinking, exc.usage, progress)
            raise

    def _label(self, call: ToolCall) -> str:
        tool = self._by_name.get(call.name)
        if tool is None:
            return call.name
        try:
            return tool.label(tool.args.model_validate_json(call.arguments or "{}"))
        except ValidationError:
            return tool.name

    async def _call_tool(self, call: ToolCall, ctx: ToolContext) -> tuple[str, bool]:
        """Run one tool call; every failure becomes a result the model can read."""
        tool = self._by_name.get(call.name)
        start = time.perf_counter()
        outcome = "ok"
        try:
            if tool is None:
                outcome = "unknown"
                return f"Error: there is no tool named {call.name!r}.", False
            try:
                args = tool.args.model_validate_json(call.arguments or "{}")
            except ValidationError as exc:
                outcome = "bad_arguments"
                return f"Error: invalid arguments: {exc.errors(include_url=False)}", False
            timeout = tool.timeout or self.settings.tool_timeout
            try:
                async with asyncio.timeout(timeout):
                    result = await tool.run(args, ctx)
            except TimeoutError:
                outcome = "timeout"
                return f"Error: {call.name} timed out after {timeout:g} s.", False
            except ToolFailure as exc:
                outcome = "failed"
                return f"Error: {exc}", False
            except Exception as exc:
                outcome = "crashed"
                log.exception("tool_crashed", tool=call.name)
                return f"Error: {call.name} failed unexpectedly ({type(exc).__name__}).", False
            return prompt.cap_output(result, self.settings.tool_output_cap), True
        finally:
            log.info(
                "tool_call",
                tool=call.name,
                outcome=outcome,
                duration_ms=int((time.perf_counter() - start) * 1000),
            )

    async def _record(
        self,
        turn: Turn,
        tier: ModelTier,
        model: str,
        thinking: bool,
        usage: Usage,
        progress: _Progress,
    ) -> None:
        cost = self.prices.cost_micros(tier, usage)
        progress.usage += usage
        progress.cost += cost
        t = turn.thread
        await self.ledger.recorder.record(
            UsageRecord(
                team=t.team,
                user=turn.user,
                channel=t.channel,
                thread_ts=t.thread_ts,
                tier=tier,
                model=model,
                thinking=thinking,
                usage=usage,
                cost_micros=cost,
                at=datetime.now(UTC),
            )
        )

    def _too_big(self, messages: list[Message], calibration: tuple[int, int] | None) -> bool:
        chars = prompt.request_chars(messages, self._schemas)
        return prompt.estimate_tokens(chars, calibration) > self.settings.context_token_budget

    async def _store_interrupted(self, t: ThreadRef, progress: _Progress, reason: str) -> None:
        """Store the turn as far as it got: the question, complete tool rounds, and the text
        that was shown, marked as interrupted. History stays alternating and replayable."""
        stored = list(progress.stored)
        complete = stored[-1]["role"] == "assistant" and not stored[-1].get("tool_calls")
        if not complete:
            stored.append(prompt.interrupted_message(progress.pending, reason))
        await self._append_safely(t, stored)

    async def _append_safely(self, t: ThreadRef, stored: list[Message]) -> None:
        try:
            await self.history.append(t, stored)
        except (RedisError, OSError) as exc:
            log.error("store_interrupted_failed", error=type(exc).__name__)
