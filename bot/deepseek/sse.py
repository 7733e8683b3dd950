"""Pure parsing of a streamed chat completion: SSE bytes in, typed stream events out.

No I/O, no clock. `StreamParser.feed` accepts the response body cut into network chunks
anywhere (inside a line, inside a multi-byte UTF-8 character, between the CR and LF of a CRLF)
and returns the same events however the bytes were cut. `bot.deepseek.client` does the HTTP
around it.

What it understands (see shared REFERENCE.md for the sources):
- SSE framing per the WHATWG spec: LF, CR and CRLF line ends, `data:` with or without the
  space, several `data:` lines joined by LF, `: keep-alive` comments (counted), other fields
  (`event:`, `id:`, `retry:`) ignored, a leading BOM dropped. More lenient than the spec in two
  places gateways need: lines of an event that arrive without the blank line before EOF are
  still dispatched, and several JSON `data:` lines in one event are read one by one.
- `data: [DONE]` ends the stream; anything after it is ignored.
- Deltas: `reasoning_content` (or `reasoning`, as some gateways name it) and `content`.
- Tool calls split over many chunks are merged by `index`; a later fragment's empty `id` or
  `name` never overwrites the first one. They are emitted complete, in index order, when the
  choice's `finish_reason` arrives.
- Usage from any chunk that carries it: DeepSeek's last choice chunk or the OpenAI-style
  `choices: []` chunk; cache hits as `prompt_cache_hit_tokens`/`prompt_cache_miss_tokens` or
  `prompt_tokens_details.cached_tokens`; `completion_tokens_details.reasoning_tokens`.
- A chunk `{"error": {...}}` (gateways report mid-stream failures that way) raises `ErrorChunk`.
- A `data:` payload that is not a JSON object raises `MalformedStream`.

Chunks of a shape already seen in the stream are read with one C string scan instead of a full
JSON parse (see `_learn`): the parser runs once per chunk on the hot path (bench/sse_parse.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from json.decoder import JSONDecoder
from typing import Any

from bot.contracts.errors import UpstreamError
from bot.contracts.stream import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCall, Usage

_DONE = b"[DONE]"
_SPACE = frozenset(b" \t\r\n")
_MAX_TEMPLATES = 4
# The C scanner parses one JSON value at an offset without json.loads' per-call checks and
# whitespace regexes: about a third faster on small chunks. json.loads is the fallback.
_scan_once: Callable[[str, int], tuple[Any, int]] = JSONDecoder().scan_once  # type: ignore[attr-defined]
# The C string scanner: (value, index after the closing quote) from just after an opening one.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_new = object.__new__
_SETTERS: dict[type[Any], Any] = {
    TextDelta: TextDelta.__dict__["text"].__set__,
    ReasoningDelta: ReasoningDelta.__dict__["text"].__set__,
}


class MalformedStream(UpstreamError):
    """The gateway sent bytes that are not a chat-completion stream (detail says how, without
    echoing them: they may be an HTML page or contain anything)."""


class IncompleteStream(Exception):
    """The stream ended (EOF or `[DONE]`) before the choice had a `finish_reason`."""


class ErrorChunk(Exception):
    """The stream carried an error object instead of a chunk. `code` is the HTTP-like status
    when the gateway gave one (int), else None; `message` is the gateway's text, unredacted:
    the caller must redact it before logging."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"error chunk (code {code})")
        self.code = code
        self.message = message


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def parse_usage(raw: Mapping[str, Any]) -> Usage:
    """Read a `usage` object from either DeepSeek or an OpenAI-style gateway.

    Cache hits come from `prompt_cache_hit_tokens` (DeepSeek) or
    `prompt_tokens_details.cached_tokens` (OpenAI style); a missing miss count is derived
    as prompt - hit, and a missing prompt count as hit + miss."""
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    hit_raw = raw.get("prompt_cache_hit_tokens")
    if hit_raw is None:
        details = raw.get("prompt_tokens_details")
        if isinstance(details, Mapping):
            hit_raw = details.get("cached_tokens")
    hit = _int(hit_raw)
    miss_raw = raw.get("prompt_cache_miss_tokens")
    miss = _int(miss_raw) if miss_raw is not None else max(0, prompt - hit)
    if not prompt:
        prompt = hit + miss
    reasoning = 0
    cdetails = raw.get("completion_tokens_details")
    if isinstance(cdetails, Mapping):
        reasoning = _int(cdetails.get("reasoning_tokens"))
    return Usage(prompt, completion, hit, miss, reasoning)


def _error_chunk(err: object) -> ErrorChunk:
    code: int | None = None
    message = ""
    if isinstance(err, Mapping):
        raw_code = err.get("code", err.get("status"))
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        elif isinstance(raw_code, str) and raw_code.isdigit():
            code = int(raw_code)
        msg = err.get("message")
        message = msg if isinstance(msg, str) else ""
    elif isinstance(err, str):
        message = err
    return ErrorChunk(code, message)


def loads_chunk(payload: bytes) -> dict[str, Any]:
    """Parse one `data:` payload into a JSON object; raise MalformedStream otherwise."""
    try:
        text = payload.decode()
        obj, end = _scan_once(text, 0)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("trailing data")
    except (StopIteration, ValueError):  # JSONDecodeError and UnicodeDecodeError included
        try:
            obj = json.loads(payload)
        except ValueError:
            raise MalformedStream(
                f"data line is not JSON ({len(payload)} bytes)", status=200
            ) from None
    if not isinstance(obj, dict):
        raise MalformedStream(f"data line is JSON but not an object: {type(obj).__name__}")
    return obj


class _Call:
    __slots__ = ("args", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []


class StreamParser:
    """Incremental parser of one streamed chat completion.

    `feed(bytes)` returns the reasoning/text deltas and completed tool calls the bytes
    finished; `close()` at EOF returns what a last unterminated event held; `finish()` then
    returns the `Finish` event. State worth reading: `done` ([DONE] seen), `failed` (a bad
    event was read after good ones in one chunk: `close()` raises it), `reason`
    (finish_reason or None), `usage`, `keepalives` (comment lines seen)."""

    __slots__ = (
        "_buf",
        "_calls",
        "_error",
        "_fast",
        "_singles",
        "_skip_lf",
        "_started",
        "_templates",
        "done",
        "keepalives",
        "reason",
        "usage",
    )

    def __init__(self, *, fast: bool = True) -> None:
        self._fast = fast  # False: parse every chunk in full (tests compare both paths)
        # (b"data: " + bytes before the string value, bytes after it, offset of the value,
        # len(after) - 1, event class)
        self._templates: list[tuple[bytes, bytes, int, int, type[StreamEvent]]] = []
        # The same with the event's blank line: a read holding exactly one such event.
        self._singles: list[tuple[bytes, bytes, int, int, type[StreamEvent]]] = []
        self._buf = b""  # LF-normalized bytes after the last blank line
        self._skip_lf = False  # the last chunk ended in CR: a leading LF is its CRLF's half
        self._started = False
        self._calls: dict[int, _Call] = {}
        self._error: MalformedStream | ErrorChunk | None = None
        self.done = False
        self.keepalives = 0
        self.reason: str | None = None
        self.usage: Usage | None = None

    # --- framing ------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Consume the next bytes of the body; return the events they complete.

        Raises MalformedStream on a payload that is not a JSON object and ErrorChunk on an
        error object; if events came before it in this chunk, they are returned and the
        error is kept for the next call (`failed`). After `[DONE]` further bytes are
        ignored."""
        if self._error is not None:
            raise self._error
        if not self._buf and not self.done:
            # Live, a read is usually exactly one event: try the learned shapes on it whole.
            for head, foot, start, tail, kind in self._singles:
                if chunk.startswith(head) and chunk.endswith(foot):
                    try:
                        text = chunk.decode()
                        value, end = _scanstring(text, start)
                    except ValueError:
                        break
                    if end + tail == len(text):
                        self._skip_lf = False
                        if not value:
                            return []
                        event = _new(kind)
                        _SETTERS[kind](event, value)
                        return [event]
                    break
        out: list[StreamEvent] = []
        if self.done or not chunk:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        if not self._started:
            chunk = self._buf + chunk
            self._buf = b""
            if len(chunk) < 3 and b"\xef\xbb\xbf".startswith(chunk):
                self._buf = chunk  # maybe a BOM cut short: wait for more
                return out
            self._started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        if chunk.find(b"\r") >= 0:
            if chunk[-1] == 13:
                self._skip_lf = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._buf:
            chunk = self._buf + chunk
        # An event ends at a blank line. Most events are one `data: ` line of a shape
        # learned earlier in the stream (see `_learn`); the rest take the general path.
        blocks = chunk.split(b"\n\n")
        self._buf = blocks.pop()
        templates = self._templates
        for block in blocks:
            matched = False
            for head, foot, start, tail, kind in templates:
                if block.startswith(head) and block.endswith(foot):
                    try:
                        text = block.decode()
                        value, end = _scanstring(text, start)
                    except ValueError:  # UnicodeDecodeError too: the full parse will say
                        break
                    if end + tail == len(text):
                        matched = True
                        if value:
                            # Frozen dataclasses set fields through object.__setattr__ in
                            # __init__; setting the slot directly is twice as fast.
                            event = _new(kind)
                            _SETTERS[kind](event, value)
                            out.append(event)
                    break
            if matched:
                continue
            try:
                if block.startswith(b"data: ") and block.find(b"\n") < 0:
                    self._payload(block[6:], out)
                else:
                    self._block(block, out)
            except (MalformedStream, ErrorChunk) as exc:
                if not out:
                    raise
                # The events before the bad one are real (text the user should see).
                self._error, self._buf = exc, b""
                return out
            if self.done:
                return out
        return out

    @property
    def failed(self) -> bool:
        return self._error is not None

    def close(self) -> list[StreamEvent]:
        """The body ended: dispatch an event whose lines were complete but that lacked the
        blank line (lenient: the spec drops it); drop an unterminated last line (it is what a
        cut connection leaves)."""
        if self._error is not None:
            raise self._error
        out: list[StreamEvent] = []
        rest, self._buf = self._buf, b""
        cut = rest.rfind(b"\n")
        if cut >= 0 and not self.done:
            self._block(rest[:cut], out)
        return out

    def finish(self) -> Finish:
        """The final event, once the stream is over. Raises IncompleteStream when no
        `finish_reason` arrived (the connection or the gateway cut the answer)."""
        if self.reason is None:
            raise IncompleteStream("stream ended without finish_reason")
        return Finish(self.reason, self.usage)

    def _block(self, block: bytes, out: list[StreamEvent]) -> None:
        """One event's lines, the general way: any fields, comments, several data lines."""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line:  # a stray blank line: ends an event of its own
                if data:
                    self._dispatch(data, out)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] == 58:  # b":" a comment, e.g. `: keep-alive`
                self.keepalives += 1
            if self.done:
                return
        if data:
            self._dispatch(data, out)

    # --- payloads -----------------------------------------------------------------------

    def _dispatch(self, data: list[bytes], out: list[StreamEvent]) -> None:
        if len(data) == 1:
            self._payload(data[0], out)
            return
        joined = b"\n".join(data)
        if joined.strip() == _DONE:
            self.done = True
            return
        try:
            obj = loads_chunk(joined)
        except MalformedStream:
            # One JSON document per line, sent without blank lines between them.
            for part in data:
                if part.strip():
                    self._payload(part, out)
                if self.done:
                    return
            return
        self._chunk(obj, out)

    def _payload(self, data: bytes, out: list[StreamEvent]) -> None:
        if data[:6] == _DONE and data.strip() == _DONE:
            self.done = True
            return
        obj = loads_chunk(data)
        before = len(out)
        self._chunk(obj, out)
        if self._fast and len(out) == before + 1 and self.reason is None:
            self._learn(data, obj, out[-1])

    def _learn(self, data: bytes, obj: dict[str, Any], event: StreamEvent) -> None:
        """Remember the shape of a plain delta chunk as a template: the bytes before and
        after its one string value. Later chunks of the same stream that differ only in that
        string (nearly all of them: id, model, created and fingerprint repeat) are read with
        one C string scan instead of a full JSON parse, which is most of the parsing time.

        A template is exact, not a guess: a chunk matching it is the learned document with
        another JSON string in the same place, so it parses to the same structure."""
        if obj.get("usage") or obj.get("error"):
            return
        choices = obj.get("choices")
        if type(choices) is not list or len(choices) != 1:
            return
        delta = choices[0].get("delta")
        if type(delta) is not dict or delta.get("tool_calls"):
            return
        if type(event) is TextDelta:
            key = b'"content":'
        elif type(event) is ReasoningDelta:
            field = "reasoning_content" if delta.get("reasoning_content") else "reasoning"
            key = b'"' + field.encode() + b'":'
        else:
            return
        # Outside strings a raw quote only delimits strings, so an unescaped `"content":` is
        # a key; exactly one means it is the delta's.
        if data.count(key) != 1:
            return
        at = data.find(key) + len(key)
        while at < len(data) and data[at] in _SPACE:
            at += 1
        head = data[: at + 1]
        if data[at : at + 1] != b'"' or not head.isascii():
            return  # ASCII: then byte and character offsets agree
        try:
            value, end = _scanstring(data.decode(), at + 1)
        except ValueError:
            return
        foot = data.decode()[end - 1 :].encode()
        if value != event.text or not foot.isascii():
            return
        if len(self._templates) >= _MAX_TEMPLATES:
            self._templates.pop(0)
            self._singles.pop(0)
        start = 6 + len(head)
        self._templates.append((b"data: " + head, foot, start, len(foot) - 1, type(event)))
        self._singles.append((b"data: " + head, foot + b"\n\n", start, len(foot) + 1, type(event)))

    def _chunk(self, obj: dict[str, Any], out: list[StreamEvent]) -> None:
        usage = obj.get("usage")
        if usage and isinstance(usage, Mapping):
            self.usage = parse_usage(usage)
        choices = obj.get("choices")
        if choices:
            self._choices(choices, out)
            return
        err = obj.get("error")
        if err:
            raise _error_chunk(err)

    def _choices(self, choices: Any, out: list[StreamEvent]) -> None:
        try:
            for choice in choices:
                delta = choice.get("delta")
                if delta:
                    reasoning = delta.get("reasoning_content")
                    if reasoning is None:
                        reasoning = delta.get("reasoning")
                    if reasoning and type(reasoning) is str:
                        out.append(ReasoningDelta(reasoning))
                    text = delta.get("content")
                    if text and type(text) is str:
                        out.append(TextDelta(text))
                    calls = delta.get("tool_calls")
                    if calls:
                        self._merge(calls)
                reason = choice.get("finish_reason")
                if reason and self.reason is None:
                    self.reason = str(reason)
                    self._complete_calls(out)
        except (AttributeError, TypeError):
            # JSON, but not shaped like a chunk (e.g. `choices` is not a list of objects).
            raise MalformedStream("data line is not a chat completion chunk") from None

    def _merge(self, fragments: Iterable[Any]) -> None:
        for position, frag in enumerate(fragments):
            if not isinstance(frag, Mapping):
                continue
            index = frag.get("index")
            if not isinstance(index, int):
                index = position  # gateways that omit the index send one call per list slot
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = _Call()
            if not call.id:
                call.id = frag.get("id") or ""
            fn = frag.get("function")
            if isinstance(fn, Mapping):
                if not call.name:
                    call.name = fn.get("name") or ""
                args = fn.get("arguments")
                if args and isinstance(args, str):
                    call.args.append(args)

    def _complete_calls(self, out: list[StreamEvent]) -> None:
        for index in sorted(self._calls):
            call = self._calls[index]
            # An id is needed to pair the result with the call; invent one if the gateway
            # sent none.
            out.append(ToolCall(call.id or f"call_{index}", call.name, "".join(call.args)))
        self._calls.clear()


def merge_deltas(events: list[StreamEvent]) -> list[StreamEvent]:
    """`events` with each run of adjacent deltas of one kind joined into one delta: the
    consumers see one event per network read, not one per token, when tokens arrive
    together (as they do while the process is busy). Order and text are unchanged."""
    if len(events) < 2:
        return events
    merged: list[StreamEvent] = []
    run: list[str] = []
    run_kind: type[TextDelta] | type[ReasoningDelta] = TextDelta
    for event in events:
        if isinstance(event, TextDelta | ReasoningDelta):
            if run and type(event) is not run_kind:
                merged.append(run_kind("".join(run)))
                run.clear()
            run_kind = type(event)
            run.append(event.text)
            continue
        if run:
            merged.append(run_kind("".join(run)))
            run.clear()
        merged.append(event)
    if run:
        merged.append(run_kind("".join(run)))
    return merged


def completion_events(obj: Mapping[str, Any]) -> list[StreamEvent]:
    """Events for a whole (non-streamed) `chat.completion` object, as a gateway that ignores
    `stream: true` sends it; the last event is `Finish`.

    Raises ErrorChunk for an error object, MalformedStream for anything else unexpected."""
    err = obj.get("error")
    if err:
        raise _error_chunk(err)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedStream("JSON response is not a chat completion")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise MalformedStream("JSON response is not a chat completion")
    parser = StreamParser(fast=False)
    delta = {k: message.get(k) for k in ("reasoning_content", "reasoning", "content")}
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [
            {**c, "index": i} if isinstance(c, Mapping) else c for i, c in enumerate(calls)
        ]
    usage = obj.get("usage")
    chunk = {
        "choices": [{"delta": delta, "finish_reason": choice.get("finish_reason") or "stop"}],
        "usage": usage,
    }
    events: list[StreamEvent] = []
    parser._chunk(chunk, events)
    events.append(parser.finish())
    return events
