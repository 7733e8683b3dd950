"""Files shared in a conversation, as text for the model (pure: no network, no Slack client).

- Which files are text (`text_problem`, `looks_binary`) and in what language (`language_for`).
- `plan_files`: given the files of a message and their texts, which small ones are inlined into
  the user's turn (name and language, in a fenced block) and which are left for `read_snippet`.
- `page_lines`: a window of a long file that fits a tool result.
- Posting: `snippet_type` (a Slack snippet type for a language) and `snippet_filename`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bot.contracts.tool import SharedFile

# Slack `filetype`s whose content is text (the code and markup types Slack highlights).
TEXT_FILETYPES = frozenset(
    """text applescript c csharp cpp css csv clojure coffeescript cfm d dart diff dockerfile
    erlang fsharp fortran go groovy html handlebars haskell haxe java javascript json kotlin
    latex lisp lua markdown matlab mumps objc ocaml pascal perl php pig powershell puppet python
    r ruby rust sql sass scala scheme shell smalltalk swift tsv typescript vb vbscript velocity
    verilog xml yaml toml""".split()  # noqa: SIM905 (a word list reads better than 61 lines)
)
_SNIPPET_TYPES = TEXT_FILETYPES - {"typescript", "toml"}
_TEXT_MIMETYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/x-sh",
        "application/x-shellscript",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/sql",
        "application/x-python",
        "application/x-httpd-php",
    }
)
# File extension -> fence language, for files Slack calls plain "text".
_EXT_LANGUAGE = {
    "py": "python",
    "pyi": "python",
    "js": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "jsx": "jsx",
    "ts": "typescript",
    "tsx": "tsx",
    "go": "go",
    "rs": "rust",
    "java": "java",
    "kt": "kotlin",
    "c": "c",
    "h": "c",
    "cc": "cpp",
    "cpp": "cpp",
    "hpp": "cpp",
    "cs": "csharp",
    "rb": "ruby",
    "php": "php",
    "swift": "swift",
    "scala": "scala",
    "lua": "lua",
    "pl": "perl",
    "r": "r",
    "sh": "bash",
    "bash": "bash",
    "zsh": "bash",
    "ps1": "powershell",
    "sql": "sql",
    "json": "json",
    "yml": "yaml",
    "yaml": "yaml",
    "toml": "toml",
    "ini": "ini",
    "xml": "xml",
    "html": "html",
    "css": "css",
    "md": "markdown",
    "tf": "hcl",
    "diff": "diff",
    "patch": "diff",
    "csv": "csv",
    "dockerfile": "dockerfile",
}
_LANGUAGE_EXT = {
    "python": "py",
    "javascript": "js",
    "typescript": "ts",
    "rust": "rs",
    "golang": "go",
    "bash": "sh",
    "shell": "sh",
    "markdown": "md",
    "text": "txt",
    "plaintext": "txt",
    "yaml": "yml",
    "ruby": "rb",
    "kotlin": "kt",
    "csharp": "cs",
    "cpp": "cpp",
    "c++": "cpp",
    "perl": "pl",
    "powershell": "ps1",
}
# Words a model uses for a language -> the Slack snippet type that highlights it.
_SNIPPET_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "jsx": "javascript",
    "node": "javascript",
    # Slack's type list has no TypeScript or TOML: the nearest highlighting, or none.
    "typescript": "javascript",
    "ts": "javascript",
    "tsx": "javascript",
    "toml": "text",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "console": "shell",
    "yml": "yaml",
    "md": "markdown",
    "c++": "cpp",
    "cxx": "cpp",
    "c#": "csharp",
    "cs": "csharp",
    "golang": "go",
    "rb": "ruby",
    "rs": "rust",
    "kt": "kotlin",
    "ps1": "powershell",
    "plaintext": "text",
    "txt": "text",
    "plain": "text",
    "patch": "diff",
    "objective-c": "objc",
    "hcl": "text",
}


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """A file of a message with its text, or why it could not be read."""

    file: SharedFile
    text: str | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class FilePlan:
    """`note` is appended to the person's message ("" when there are no files); `files` are
    the readable ones, to pass as `Turn.files` so `read_snippet` can open them."""

    note: str
    files: tuple[SharedFile, ...]


def shared_file(info: Mapping[str, Any]) -> SharedFile:
    """A SharedFile from a Slack file object (`files.info` or an event's `files` entry)."""
    return SharedFile(
        id=str(info.get("id", "")),
        name=str(info.get("name") or info.get("title") or info.get("id", "file")),
        filetype=str(info.get("filetype") or ""),
        size=int(info.get("size") or 0),
    )


def text_problem(info: Mapping[str, Any], max_bytes: int) -> str | None:
    """Why a Slack file cannot be read as text (external, binary, too big), or None."""
    name = info.get("name") or info.get("title") or "the file"
    if info.get("is_external") or info.get("mode") == "external":
        return f"{name} is stored outside Slack and cannot be read"
    filetype = str(info.get("filetype") or "").lower()
    mimetype = str(info.get("mimetype") or "").lower()
    is_text = (
        info.get("mode") == "snippet"
        or filetype in TEXT_FILETYPES
        or mimetype.startswith("text/")
        or mimetype in _TEXT_MIMETYPES
        or mimetype.endswith(("+json", "+xml"))
    )
    if not is_text:
        kind = mimetype or filetype or "unknown type"
        return f"{name} is a binary file ({kind}); only text files can be read"
    size = int(info.get("size") or 0)
    if size > max_bytes:
        return (
            f"{name} is too big to read ({human_size(size)}; the limit is {human_size(max_bytes)})"
        )
    return None


def looks_binary(data: bytes) -> bool:
    """A NUL byte near the start: no text encoding people share uses one."""
    return b"\x00" in data[:8192]


def language_for(name: str, filetype: str = "") -> str:
    """The fence language of a file: Slack's filetype when it names one, else the extension."""
    filetype = filetype.lower()
    if filetype in TEXT_FILETYPES and filetype != "text":
        return filetype
    path = PurePosixPath(name.lower())
    if path.name == "dockerfile":
        return "dockerfile"
    return _EXT_LANGUAGE.get(path.suffix.lstrip("."), "text")


def human_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.0f} KB"
    return f"{size / 1_000_000:.1f} MB"


def fenced(text: str, language: str) -> str:
    """A Markdown code block whose fence is longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _shown(name: str) -> str:
    return "`" + name.replace("`", "'") + "`"


def plan_files(
    loaded: Sequence[LoadedFile], *, inline_chars: int, inline_total: int = 12_000
) -> FilePlan:
    """Inline each readable file of at most `inline_chars` characters (in the order given,
    while the inlined total stays within `inline_total`); the rest are named with their id
    for `read_snippet`; unreadable ones are named with the reason."""
    parts: list[str] = []
    readable: list[SharedFile] = []
    used = 0
    for item in loaded:
        f = item.file
        if item.text is None:
            reason = item.problem.rstrip(".")
            parts.append(f"Shared file {_shown(f.name)} was not read: {reason}.")
            continue
        readable.append(f)
        language = language_for(f.name, f.filetype)
        size = len(item.text)
        if size <= inline_chars and used + size <= inline_total:
            used += size
            parts.append(
                f"Shared file {_shown(f.name)} ({language}):\n{fenced(item.text, language)}"
            )
        else:
            lines = item.text.count("\n") + 1
            parts.append(
                f"Shared file {_shown(f.name)} ({language}, {lines:,} lines, "
                f"{human_size(len(item.text.encode()))}, id {f.id}) is not shown here; "
                "read it with read_snippet."
            )
    return FilePlan("\n\n".join(parts), tuple(readable))


def page_lines(text: str, start_line: int, budget: int) -> tuple[str, int, int, int]:
    """Lines from `start_line` (1-based) that fit in `budget` characters: (text, first line,
    last line, total lines). At least one line is returned (cut if it alone is too long).
    Raises ValueError when `start_line` is past the end."""
    lines = text.splitlines() or [""]
    total = len(lines)
    if start_line > total:
        raise ValueError(f"the file has {total} lines")
    out: list[str] = []
    used = 0
    last = start_line - 1
    for line in lines[start_line - 1 :]:
        cost = len(line) + 1
        if out and used + cost > budget:
            break
        if not out and cost > budget:
            line = line[: max(budget - 1, 1)] + "…"
        out.append(line)
        used += cost
        last += 1
    return "\n".join(out), start_line, last, total


def snippet_type(language: str) -> str:
    """The Slack snippet type for a language name a model gives; "text" when unknown."""
    word = language.strip().lower()
    word = _SNIPPET_ALIASES.get(word, word)
    return word if word in _SNIPPET_TYPES else "text"


def snippet_filename(title: str, language: str) -> str:
    """`Fibonacci in Go`, `go` -> `fibonacci-in-go.go`."""
    stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "snippet"
    word = language.strip().lower()
    ext = _LANGUAGE_EXT.get(word) or re.sub(r"[^a-z0-9]+", "", word)[:10] or "txt"
    return f"{stem}.{ext}"
