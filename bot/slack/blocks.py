"""Block Kit for answers (pure): the blocks that end an answer, and the reasoning modal.

Buttons carry a small JSON `value` naming the turn (`TurnRef`), so the action handlers can
find what the engine stored with it (`keys.turn`: reasoning, question) without any other
state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextActionsBlock,
    ContextBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    MarkdownBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.format import split_markdown

FEEDBACK_ACTION = "answer_feedback"
REASONING_ACTION = "show_reasoning"
RETRY_ACTION = "retry_turn"
RETRY_BLOCK = "retry"

SECTION_LIMIT = 3_000  # characters of a section block's text
MODAL_BLOCKS = 100  # blocks in a modal view
MODAL_TITLE = "Reasoning"

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnRef:
    """Where a turn lives: enough to find `keys.turn(thread, turn_id)` from a button."""

    channel: str
    thread_ts: str
    turn_id: str
    model: str = ""

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, value: str) -> TurnRef | None:
        """The ref in a button's value; None if it is not one of ours."""
        try:
            data = json.loads(value)
            return cls(
                str(data["channel"]),
                str(data["thread_ts"]),
                str(data["turn_id"]),
                str(data.get("model", "")),
            )
        except (ValueError, TypeError, KeyError):
            return None


def markdown(text: str) -> Block:
    return MarkdownBlock(text=text).to_dict()


def _feedback(ref: TurnRef) -> Block:
    def value(vote: str) -> str:
        return json.dumps({"vote": vote, **asdict(ref)}, separators=(",", ":"))

    return ContextActionsBlock(
        block_id="feedback",
        elements=[
            FeedbackButtonsElement(
                action_id=FEEDBACK_ACTION,
                positive_button=FeedbackButtonObject(
                    text="Good answer", accessibility_label="Good answer", value=value("up")
                ),
                negative_button=FeedbackButtonObject(
                    text="Bad answer", accessibility_label="Bad answer", value=value("down")
                ),
            )
        ],
    ).to_dict()


def answer_end(ref: TurnRef, *, reasoning: bool, footer: str | None) -> list[Block]:
    """What ends a finished answer: "Show reasoning" (when there was any), the feedback
    buttons, and the optional footer line."""
    blocks: list[Block] = []
    if reasoning:
        blocks.append(
            ActionsBlock(
                block_id="reasoning",
                elements=[
                    ButtonElement(
                        text="Show reasoning", action_id=REASONING_ACTION, value=ref.dumps()
                    )
                ],
            ).to_dict()
        )
    blocks.append(_feedback(ref))
    if footer:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=footer)]).to_dict())
    return blocks


def failure_end(ref: TurnRef) -> list[Block]:
    """What ends a failed answer: a "Retry" button that runs the question again."""
    return [
        ActionsBlock(
            block_id=RETRY_BLOCK,
            elements=[ButtonElement(text="Retry", action_id=RETRY_ACTION, value=ref.dumps())],
        ).to_dict()
    ]


def without_retry(blocks: list[Block], note: str) -> list[Block]:
    """A failed answer's blocks after Retry was pressed: the button replaced by `note`."""
    kept = [b for b in blocks if b.get("block_id") != RETRY_BLOCK]
    return [*kept, ContextBlock(elements=[MarkdownTextObject(text=note)]).to_dict()]


def reasoning_view(reasoning: str) -> dict[str, Any]:
    """A modal showing a turn's reasoning as plain text, in section blocks of at most
    `SECTION_LIMIT` characters (cut at line ends where possible), within a modal's block
    limit; what does not fit is dropped with a note."""
    text = reasoning.strip() or "There was no reasoning for this answer."
    # Only what can be shown is split: reasoning may run to a million characters.
    pieces = split_markdown(text[: MODAL_BLOCKS * SECTION_LIMIT], SECTION_LIMIT)
    if len(pieces) > MODAL_BLOCKS:
        pieces = [*pieces[: MODAL_BLOCKS - 1], "[The rest of the reasoning is too long to show.]"]
    blocks = [SectionBlock(text=PlainTextObject(text=p, emoji=False)).to_dict() for p in pieces]
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": MODAL_TITLE},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks,
    }
