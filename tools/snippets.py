"""read_snippet and post_snippet: code files in the conversation, through the `Surface`.

read_snippet opens a file shared in the conversation (only those the surface listed in
`ToolContext.files`, so a page the model read cannot send it after other files the bot can see),
a window of lines at a time. post_snippet uploads code as a snippet in the thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from bot.contracts.tool import SharedFile, Tool, ToolContext, ToolFailure
from bot.core.shared_files import fenced, language_for, page_lines

READ_NAME = "read_snippet"
READ_DESCRIPTION = (
    "Read a file or code snippet shared in this conversation, by its id or its name. A long "
    "file comes back a window of lines at a time; pass start_line to read on."
)
POST_NAME = "post_snippet"
POST_DESCRIPTION = (
    "Post code into the conversation as a snippet: a file with syntax highlighting that people "
    "can open and download. Use it instead of a code block for any code longer than about 40 "
    "lines, then refer to the snippet in your answer rather than repeating the code."
)
# Room kept in the tool result for the header, the fence and the "more" line.
_OVERHEAD = 400


class ReadSnippetArgs(BaseModel):
    file: str = Field(
        min_length=1, max_length=255, description="The file's id (like F0123ABCD) or its name."
    )
    start_line: int = Field(
        default=1, ge=1, description="The first line to return, to read on in a long file."
    )


class PostSnippetArgs(BaseModel):
    title: str = Field(
        min_length=1, max_length=200, description="A short title, e.g. 'Retry wrapper for httpx'."
    )
    language: str = Field(
        default="text",
        max_length=40,
        description="The code's language, e.g. python, go, sql, shell, yaml.",
    )
    content: str = Field(min_length=1, max_length=500_000, description="The complete code.")


def find_file(files: Sequence[SharedFile], wanted: str) -> SharedFile | None:
    """The shared file with id `wanted`, else the one named `wanted` (case-insensitive; when
    several share the name, the latest shared)."""
    wanted = wanted.strip()
    for f in files:
        if f.id == wanted:
            return f
    named = [f for f in files if f.name.lower() == wanted.lower()]
    return named[-1] if named else None


def read_snippet_tool() -> Tool[ReadSnippetArgs]:
    return Tool(
        name=READ_NAME,
        description=READ_DESCRIPTION,
        args=ReadSnippetArgs,
        run=read_snippet,
        label=lambda a: f"Reading snippet {a.file}",
    )


def post_snippet_tool() -> Tool[PostSnippetArgs]:
    return Tool(
        name=POST_NAME,
        description=POST_DESCRIPTION,
        args=PostSnippetArgs,
        run=post_snippet,
        label=lambda a: f"Posting snippet “{a.title}”",
    )


async def read_snippet(args: ReadSnippetArgs, ctx: ToolContext) -> str:
    if ctx.surface is None or not ctx.files:
        raise ToolFailure("No files are shared in this conversation.")
    found = find_file(ctx.files, args.file)
    if found is None:
        listed = ", ".join(f"{f.name} ({f.id})" for f in ctx.files[-20:])
        raise ToolFailure(
            f"No shared file is called {args.file!r}; the shared files are: {listed}."
        )
    info, text = await ctx.surface.read_file(found.id)
    budget = max(ctx.settings.tool_output_cap - _OVERHEAD, 200)
    try:
        chunk, first, last, total = page_lines(text, args.start_line, budget)
    except ValueError as exc:
        raise ToolFailure(
            f"{info.name}: start_line {args.start_line} is past the end ({exc})."
        ) from None
    language = language_for(info.name, info.filetype)
    span = (
        f"all {total} lines" if first == 1 and last == total else f"lines {first}–{last} of {total}"
    )
    out = f"{info.name} ({language}, {span}):\n{fenced(chunk, language)}"
    if last < total:
        out += f"\n[more: call read_snippet with start_line={last + 1}]"
    return out


async def post_snippet(args: PostSnippetArgs, ctx: ToolContext) -> str:
    if ctx.surface is None:
        raise ToolFailure("Snippets cannot be posted here; put the code in the answer.")
    return await ctx.surface.post_snippet(args.title, args.language, args.content)
