"""Slack text in and out (pure: no I/O, no clock).

In: a Slack message's text becomes what the model reads — the bot's own mention stripped,
`<@U…>` turned into the person's display name, channel, link and broadcast markup made
readable, Slack's HTML escapes undone.

Out: the model writes standard Markdown, which Slack renders (`markdown_text`, markdown
blocks). Slack caps the size of a call and of a message, so long answers are split at clean
boundaries — paragraph ends first, then line ends, sentences, spaces — and never inside a
fenced code block unless one block alone is too big, in which case the fence is closed at the
cut and reopened (same info string) in the next piece.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.contracts.stream import Usage
from bot.deepseek.pricing import format_usd

# What the model is told about Slack. Part of the stable system prompt: never vary it.
FORMAT_NOTE = (
    "You are answering in a Slack thread. Slack renders standard Markdown here: headings, "
    "bold, italics, lists, links, block quotes and fenced code blocks with a language. Write "
    "standard Markdown, not Slack's mrkdwn, and do not write <@user> or <#channel> markup: "
    "refer to people by name. Keep answers easy to skim in a chat thread."
)

# Room kept free in every piece for a closing fence (and its newline): a message may grow
# to `limit - FENCE_RESERVE` before it is cut.
FENCE_RESERVE = 8

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_TOKEN = re.compile(r"<([^<>\n]*)>")
_PARA = re.compile(r"\n[ \t]*\n")
_SENTENCE = re.compile(r"[.!?…][)\]\"'”’]*\s")
_SPACE = re.compile(r"\s")


# --- input ---------------------------------------------------------------------------------


def _bot_mention(bot_user_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>[:,]?[ \t]?")


def mentioned_users(text: str, *, bot_user_id: str = "") -> list[str]:
    """User ids mentioned as `<@U…>` (or `<@U…|label>`), first occurrence order, without the
    bot itself."""
    found: list[str] = []
    for m in _TOKEN.finditer(text):
        target = m.group(1).partition("|")[0]
        if target.startswith("@"):
            uid = target[1:]
            if uid and uid != bot_user_id and uid not in found:
                found.append(uid)
    return found


def _same_place(url: str, label: str) -> bool:
    bare = url.split("://", 1)[-1].rstrip("/")
    return label.rstrip("/") in (url.rstrip("/"), bare)


def _readable(inner: str, names: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        uid = target[1:]
        return "@" + (names.get(uid) or label or uid).lstrip("@")
    if target.startswith("#"):
        return "#" + (label or names.get(target[1:]) or target[1:])
    if target.startswith("!"):
        command = target[1:]
        if command in ("here", "channel", "everyone"):
            return "@" + command
        if command.startswith("subteam^"):
            return label or "@group"
        return label  # <!date^…|fallback> and anything newer: the fallback text
    if target.startswith("mailto:"):
        return label or target.removeprefix("mailto:")
    if not label or _same_place(target, label):
        return target
    return f"{label} ({target})"


def clean_input(text: str, *, bot_user_id: str = "", names: Mapping[str, str] | None = None) -> str:
    """The text a person typed, as the model should read it.

    The bot's mention (and a `:` or `,` right after it) is removed; `<@U1>` becomes `@Name`
    from `names` (else the markup's label, else the id); `<#C1|general>` becomes `#general`;
    `<https://x|label>` becomes `label (https://x)` and a bare link its URL; `<!here>` becomes
    `@here`; `&lt; &gt; &amp;` are unescaped. Leading and trailing whitespace is dropped; the
    rest (code indentation included) is kept as typed."""
    names = names or {}
    if bot_user_id:
        text = _bot_mention(bot_user_id).sub("", text)
    text = _TOKEN.sub(lambda m: _readable(m.group(1), names), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.strip()


def title_from(question: str, limit: int = 60) -> str:
    """A thread title from the first question: its first line, cut at a word under `limit`."""
    line = next((ln.strip() for ln in question.splitlines() if ln.strip()), "")
    line = re.sub(r"\s+", " ", line)
    if len(line) <= limit:
        return line or "New chat"
    cut = line.rfind(" ", 0, limit - 1)
    return line[: cut if cut > limit // 2 else limit - 1].rstrip(" ,.;:") + "…"


# --- output: fences ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    start: int  # index of the opening fence line
    end: int  # index after the closing fence line (len(text) if never closed)
    opening: str  # the opening fence line, e.g. "```python"


def _blocks(text: str) -> list[_Block]:
    """Fenced code blocks (CommonMark fences: ``` or ~~~, up to 3 spaces of indent)."""
    blocks: list[_Block] = []
    pos = 0
    start = -1
    opening = ""
    marker = ""
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line.rstrip("\r\n"))
        if start < 0:
            # A backtick fence's info string may not contain backticks.
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                start, opening, marker = pos, line.rstrip("\r\n").strip(), m.group(1)
        elif (
            m
            and m.group(1)[0] == marker[0]
            and len(m.group(1)) >= len(marker)
            and not m.group(2).strip()
        ):
            blocks.append(_Block(start, pos + len(line), opening))
            start = -1
        pos += len(line)
    if start >= 0:
        blocks.append(_Block(start, len(text), opening))
    return blocks


def open_fence(text: str) -> str | None:
    """The opening fence line of the code block `text` ends inside, or None."""
    blocks = _blocks(text)
    if blocks and blocks[-1].end == len(text) and not _closed_at_end(text, blocks[-1]):
        return blocks[-1].opening
    return None


def _closed_at_end(text: str, block: _Block) -> bool:
    """True when the block's last line is its closing fence (it ends exactly at the end)."""
    inner = text[block.start : block.end].splitlines()
    if len(inner) < 2:
        return False
    m = _FENCE.match(inner[-1])
    marker = _FENCE.match(block.opening)
    return bool(
        m
        and marker
        and m.group(1)[0] == marker.group(1)[0]
        and len(m.group(1)) >= len(marker.group(1))
        and not m.group(2).strip()
    )


def _closing(opening: str) -> str:
    m = _FENCE.match(opening)
    return m.group(1) if m else "```"


# --- output: splitting -------------------------------------------------------------------


def _cut(text: str, budget: int, floor: int = 0) -> int:
    """Where to cut `text` so the head (`text[:cut]`) fits in `budget` characters.

    The cut is above `floor` when possible. Preference: the last paragraph end or code block
    end in the second half of the window; the last line end there; the start of a code block
    that would fit a piece of its own; a line end inside a code block too big for any piece;
    a sentence end or space outside code; any clean boundary; `budget` itself."""
    budget = min(budget, len(text))
    # Blocks that start in the window; one that does not close within twice the window
    # cannot fit a piece of its own, so nothing further needs scanning (long texts stay
    # linear to split).
    blocks = [b for b in _blocks(text[: 2 * budget + 1]) if b.start < budget]

    def outside(i: int) -> bool:
        return not any(b.start < i < b.end for b in blocks)

    half = floor + (budget - floor) // 2
    window = text[:budget]

    def best(candidates: Iterable[int], at_least: int) -> int | None:
        ok = [c for c in candidates if at_least <= c <= budget and c > floor and outside(c)]
        return max(ok) if ok else None

    paragraphs = [m.end() for m in _PARA.finditer(window)] + [b.end for b in blocks]
    lines = [m.end() for m in re.finditer("\n", window)]
    for found in (best(paragraphs, half), best(lines, half)):
        if found is not None:
            return found
    straddling = next((b for b in blocks if b.start < budget < b.end), None)
    if straddling is not None:
        if straddling.start > floor and straddling.end - straddling.start <= budget:
            return straddling.start
        first_line_end = text.find("\n", straddling.start) + 1
        inner = [c for c in lines if c > max(first_line_end, floor)]
        if first_line_end and inner:
            return max(inner)
    sentences = [m.end() for m in _SENTENCE.finditer(window)]
    spaces = [m.end() for m in _SPACE.finditer(window)]
    for found in (best(sentences, half), best(spaces, half)):
        if found is not None:
            return found
    anything = best([*paragraphs, *lines, *sentences, *spaces], floor + 1)
    if anything is not None:
        return anything
    return max(budget, floor)


@dataclass(frozen=True, slots=True)
class Cut:
    """How `pending` text is split when it does not fit after `sent` in one message."""

    take: int  # characters of `pending` that end the current message
    close: str  # appended after them: a closing fence when the cut is inside a code block
    reopen: str  # starts the next message: the reopened fence line, when there is one
    rest_from: int  # where the next message's text starts in `pending` (newlines skipped)

    def head(self, pending: str) -> str:
        """What ends the current message (trailing whitespace dropped outside code)."""
        taken = pending[: self.take]
        return taken + self.close if self.close else taken.rstrip()

    def rest(self, pending: str) -> str:
        """What starts the next message."""
        return self.reopen + pending[self.rest_from :]


def cut_after(sent: str, pending: str, limit: int) -> Cut:
    """Split `pending` text that no longer fits after `sent` (already shown in a message of
    at most `limit` characters). If the cut falls inside a code block, the current message
    gets a closing fence and the next one reopens it with the same info string."""
    body = sent + pending
    floor = len(sent)
    cut = max(_cut(body, limit - FENCE_RESERVE, floor), floor)
    take = cut - floor
    fence = open_fence(body[:cut])
    if fence is not None:
        newline = "" if body[:cut].endswith("\n") or not body[:cut] else "\n"
        return Cut(take, newline + _closing(fence), fence + "\n", take)
    rest_from = take
    while rest_from < len(pending) and pending[rest_from] == "\n":
        rest_from += 1
    return Cut(take, "", "", rest_from)


def close_fence(text: str) -> str:
    """What to append to `text` so that it does not end inside a code block ("" if it
    does not): a notice written after it then shows as text, not code."""
    fence = open_fence(text)
    if fence is None:
        return ""
    return ("" if text.endswith("\n") else "\n") + _closing(fence)


def split_markdown(text: str, limit: int) -> list[str]:
    """Split Markdown into pieces of at most `limit` characters at clean boundaries, never
    inside a fenced code block unless that block alone exceeds a piece (then its fence is
    closed and reopened across the cut). Joining the pieces loses only whitespace at cuts
    and the added fence lines."""
    if limit <= 2 * FENCE_RESERVE:
        raise ValueError("limit too small")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = cut_after("", rest, limit)
        head, tail = cut.head(rest), cut.rest(rest)
        if len(tail) >= len(rest):  # a fence line too long to reopen: plain hard cut
            head, tail = rest[: limit - FENCE_RESERVE], rest[limit - FENCE_RESERVE :]
        pieces.append(head)
        rest = tail
    pieces.append(rest)
    return [p for p in pieces if p.strip()] or [""]


def chunks_of(text: str, size: int) -> list[str]:
    """`text` in consecutive slices of at most `size` characters (a call's own limit; the
    message split already happened at clean boundaries)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- output: footer ----------------------------------------------------------------------


def footer(model: str, thinking: bool, usage: Usage, cost_micros: int) -> str:
    """One line under an answer: model, thinking, tokens, cost."""
    tokens = f"{usage.prompt:,} in"
    if usage.cache_hit:
        tokens += f" ({usage.cache_hit:,} cached)"
    tokens += f" · {usage.completion:,} out"
    if usage.reasoning:
        tokens += f" ({usage.reasoning:,} reasoning)"
    mode = "thinking" if thinking else "no thinking"
    return f"{model} · {mode} · {tokens} · {format_usd(cost_micros)}"
