"""Pure helpers of the tools: page text, search results, shared files. Table tests."""

from __future__ import annotations

import pytest

from bot.contracts.tool import SharedFile
from bot.core.shared_files import (
    LoadedFile,
    fenced,
    human_size,
    language_for,
    looks_binary,
    page_lines,
    plan_files,
    shared_file,
    snippet_filename,
    snippet_type,
    text_problem,
)
from tools import page_text
from tools.search_results import Result, clean, format_results, parse

# --- page_text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/html; charset=utf-8", "html"),
        ("TEXT/HTML", "html"),
        ("application/xhtml+xml", "html"),
        ("application/json", "json"),
        ("application/ld+json", "json"),
        ("text/plain", "text"),
        ("text/markdown; charset=utf-8", "text"),
        ("image/png", None),
        ("application/pdf", None),
        ("application/octet-stream", None),
        ("text/csv", None),
        ("", None),
        (None, None),
    ],
)
def test_content_kind(content_type: str | None, kind: str | None) -> None:
    assert page_text.content_kind(content_type) == kind


@pytest.mark.parametrize(
    ("body", "header", "kind", "charset"),
    [
        (b"<p>x</p>", None, "html", "utf-8"),
        (b"<p>x</p>", "ISO-8859-1", "html", "iso8859-1"),
        (b'<meta charset="windows-1252"><p>x</p>', None, "html", "cp1252"),
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">',
            None,
            "html",
            "koi8-r",
        ),
        (b'<meta charset="windows-1252">', "utf-8", "html", "utf-8"),  # the header wins
        (b'<meta charset="no-such-charset">', None, "html", "utf-8"),
        (b'<meta charset="latin-1">', None, "text", "utf-8"),  # only HTML is sniffed
    ],
)
def test_charset_of(body: bytes, header: str | None, kind: page_text.Kind, charset: str) -> None:
    assert page_text.charset_of(body, header, kind) == charset


@pytest.mark.parametrize(
    ("markup", "title"),
    [
        ("<title>Hello</title>", "Hello"),
        ("<TITLE lang=en>\n  A &amp; B \n</TITLE>", "A & B"),
        ("<title><b>Bold</b> title</title>", "Bold title"),
        ("<h1>no title</h1>", ""),
    ],
)
def test_html_title(markup: str, title: str) -> None:
    assert page_text.html_title(markup) == title


def test_html_to_markdown() -> None:
    markup = (
        "<h2>Install</h2><p>Run <code>pip install x</code>.</p><script>alert(1)</script>"
        '<ul><li>one</li><li>two</li></ul><p><a href="b.html">next</a> <img src="i.png"></p>'
    )
    assert page_text.html_to_markdown(markup, "https://ex.com/docs/a.html") == (
        "## Install\n\nRun `pip install x`.\n\n  * one\n  * two\n\n"
        "[next](https://ex.com/docs/b.html)"
    )


@pytest.mark.parametrize(
    ("text", "tidy"),
    [
        ("a  \nb\t\n", "a\nb"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("a\n \n\t\n \nb", "a\n\nb"),
        ("\r\na\r\n", "a"),
    ],
)
def test_tidy(text: str, tidy: str) -> None:
    assert page_text.tidy(text) == tidy


@pytest.mark.parametrize(
    ("url", "short"),
    [
        ("https://www.example.com/", "example.com"),
        ("https://example.com/docs/page?x=1", "example.com/docs/page?x=1"),
        ("http://a.b/" + "p" * 80, "a.b/" + "p" * 43 + "…"),
        ("not a url at all", "not a url at all"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_short_url(url: str, short: str) -> None:
    assert page_text.short_url(url) == short


def test_render_page() -> None:
    assert page_text.render_page(url="u", kind="text", text="  body ") == "URL: u\n\nbody"
    assert page_text.render_page(url="u", kind="html", text="", title="T", cut_at=2000) == (
        "Title: T\nURL: u\n\n(the page has no text)\n\n"
        "[cut: only the first 2,000 bytes of the page were read]"
    )


# --- search_results ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean_text"),
    [
        ("<strong>Redis</strong> streams", "Redis streams"),
        ("a &amp; b&#39;s", "a & b's"),
        ("  many\n\n spaces ", "many spaces"),
        (None, ""),
        (42, ""),
    ],
)
def test_clean(raw: object, clean_text: str) -> None:
    assert clean(raw) == clean_text


@pytest.mark.parametrize(
    ("backend", "data", "expected"),
    [
        (
            "searxng",
            {"results": [{"title": "T", "url": "https://a", "content": "C"}]},
            [Result("T", "https://a", "C")],
        ),
        (
            "brave",
            {"web": {"results": [{"title": "T", "url": "https://a", "description": "<b>D</b>"}]}},
            [Result("T", "https://a", "D")],
        ),
        ("brave", {"query": {"original": "q"}}, []),  # Brave leaves `web` out with no results
        (
            "tavily",
            {"results": [{"url": "https://a", "content": "C"}, {"title": "no url"}, "junk"]},
            [Result("https://a", "https://a", "C")],
        ),
        (
            "searxng",
            {"results": [{"title": "1", "url": "https://a"}, {"title": "2", "url": "https://a"}]},
            [Result("1", "https://a", "")],  # duplicates (several engines) once
        ),
    ],
)
def test_parse(backend: str, data: object, expected: list[Result]) -> None:
    assert parse(backend, data) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backend", "data"),
    [("searxng", []), ("searxng", {"results": "x"}), ("tavily", {}), ("brave", {"web": "x"})],
)
def test_parse_rejects_other_shapes(backend: str, data: object) -> None:
    with pytest.raises(ValueError):
        parse(backend, data)  # type: ignore[arg-type]


def test_format_results() -> None:
    results = [Result("A", "https://a", "x" * 20), Result("B", "https://b", "")]
    assert format_results("q", results, limit=5, snippet_chars=10) == (
        "Results for “q”:\n\n1. A\n   https://a\n   xxxxxxxxx…\n\n2. B\n   https://b"
    )
    assert format_results("q", results, limit=1).count("https://") == 1
    assert format_results("q", [], limit=5) == "No results for “q”."


# --- shared_files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "problem"),
    [
        ({"name": "a.py", "filetype": "python", "size": 10}, None),
        ({"name": "a.txt", "filetype": "text", "mimetype": "text/plain", "size": 10}, None),
        ({"name": "x", "filetype": "", "mimetype": "application/json", "size": 10}, None),
        ({"name": "x", "filetype": "", "mimetype": "application/vnd.api+json"}, None),
        ({"name": "s", "mode": "snippet", "filetype": "auto"}, None),
        (
            {"name": "p.png", "filetype": "png", "mimetype": "image/png"},
            "p.png is a binary file (image/png)",
        ),
        ({"name": "z.zip", "filetype": "zip"}, "z.zip is a binary file (zip)"),
        ({"name": "q"}, "q is a binary file (unknown type)"),
        (
            {"name": "b.py", "filetype": "python", "size": 2001},
            "b.py is too big to read (2 KB; the limit is 2 KB)",
        ),
        ({"name": "g", "filetype": "gdoc", "is_external": True}, "g is stored outside Slack"),
    ],
)
def test_text_problem(info: dict[str, object], problem: str | None) -> None:
    found = text_problem(info, 2000)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (b"plain", False),
        (b"caf\xc3\xa9", False),
        (b"\x00abc", True),
        (b"a" * 9000 + b"\x00", False),
    ],
)
def test_looks_binary(data: bytes, binary: bool) -> None:
    assert looks_binary(data) is binary


@pytest.mark.parametrize(
    ("name", "filetype", "language"),
    [
        ("main.py", "python", "python"),
        ("main.py", "text", "python"),
        ("app.TSX", "", "tsx"),
        ("Dockerfile", "text", "dockerfile"),
        ("notes", "text", "text"),
        ("deploy.yml", "yaml", "yaml"),
        ("weird.xyz", "", "text"),
        ("query", "sql", "sql"),
    ],
)
def test_language_for(name: str, filetype: str, language: str) -> None:
    assert language_for(name, filetype) == language


@pytest.mark.parametrize(
    ("text", "block"),
    [
        ("x = 1\n", "```python\nx = 1\n```"),
        ("use ```code```", "````python\nuse ```code```\n````"),
        ("a ````` b", "``````python\na ````` b\n``````"),
    ],
)
def test_fenced(text: str, block: str) -> None:
    assert fenced(text, "python") == block


@pytest.mark.parametrize(("size", "shown"), [(5, "5 B"), (1500, "2 KB"), (2_500_000, "2.5 MB")])
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_shared_file_from_event_object() -> None:
    assert shared_file({"id": "F1", "name": "a.py", "filetype": "python", "size": 3}) == (
        SharedFile("F1", "a.py", "python", 3)
    )
    assert shared_file({"id": "F2", "title": "Untitled"}) == SharedFile("F2", "Untitled", "", 0)


def test_plan_files_keeps_order_and_the_inline_total() -> None:
    a = LoadedFile(SharedFile("F1", "a.py", "python", 5), "a = 1")
    b = LoadedFile(SharedFile("F2", "b.py", "python", 5), "b = 2")
    c = LoadedFile(SharedFile("F3", "c.txt", "text", 9), "c\nc\nc\nc")
    plan = plan_files([a, b, c], inline_chars=10, inline_total=10)
    assert plan.note.split("\n\n") == [
        "Shared file `a.py` (python):\n```python\na = 1\n```",
        "Shared file `b.py` (python):\n```python\nb = 2\n```",
        "Shared file `c.txt` (text, 4 lines, 7 B, id F3) is not shown here; read it with "
        "read_snippet.",
    ]
    assert [f.id for f in plan.files] == ["F1", "F2", "F3"]
    names = plan_files(
        [LoadedFile(SharedFile("F4", "we`ird", "", 0), None, "gone.")], inline_chars=9
    )
    assert names.note == "Shared file `we'ird` was not read: gone." and names.files == ()


@pytest.mark.parametrize(
    ("start", "budget", "expected"),
    [
        (1, 100, ("l1\nl2\nl3\nl4", 1, 4, 4)),
        (1, 6, ("l1\nl2", 1, 2, 4)),
        (3, 6, ("l3\nl4", 3, 4, 4)),
        (4, 100, ("l4", 4, 4, 4)),
        (1, 2, ("l…", 1, 1, 4)),  # one line at least, cut to fit
    ],
)
def test_page_lines(start: int, budget: int, expected: tuple[str, int, int, int]) -> None:
    assert page_lines("l1\nl2\nl3\nl4\n", start, budget) == expected


def test_page_lines_past_the_end() -> None:
    with pytest.raises(ValueError, match="the file has 4 lines"):
        page_lines("l1\nl2\nl3\nl4", 5, 100)
    assert page_lines("", 1, 10) == ("", 1, 1, 1)


@pytest.mark.parametrize(
    ("language", "kind"),
    [
        ("python", "python"),
        ("Py", "python"),
        ("js", "javascript"),
        ("TypeScript", "javascript"),
        ("bash", "shell"),
        ("c++", "cpp"),
        ("C#", "csharp"),
        ("golang", "go"),
        ("yml", "yaml"),
        ("toml", "text"),
        ("brainfuck", "text"),
        ("", "text"),
    ],
)
def test_snippet_type(language: str, kind: str) -> None:
    assert snippet_type(language) == kind


@pytest.mark.parametrize(
    ("title", "language", "filename"),
    [
        ("Fibonacci in Go", "go", "fibonacci-in-go.go"),
        ("Retry wrapper", "python", "retry-wrapper.py"),
        ("!!!", "bash", "snippet.sh"),
        ("x", "", "x.txt"),
        ("Build", "Dockerfile", "build.dockerfile"),
    ],
)
def test_snippet_filename(title: str, language: str, filename: str) -> None:
    assert snippet_filename(title, language) == filename
