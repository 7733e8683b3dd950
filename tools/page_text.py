"""Turning a fetched web response into text the model reads (pure: no network).

Which content types are read, which charset a body is in, HTML to Markdown (html2text), and the
short form of a URL shown on the progress line.
"""

from __future__ import annotations

import codecs
import html
import re
from typing import Literal

import html2text
import httpx

Kind = Literal["html", "json", "text"]

_KINDS: dict[str, Kind] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/json": "json",
    "text/json": "json",
    "text/plain": "text",
    "text/markdown": "text",
    "text/x-markdown": "text",
}

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
# Blocks that never hold readable text; dropped before html2text parses them (they are often
# most of a page's bytes, and html2text is pure Python).
_NON_TEXT = re.compile(
    r"<(script|style|svg|noscript|template)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` -> `text/html`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def content_kind(content_type: str | None) -> Kind | None:
    """How a response with this Content-Type is read; None: it is not read at all."""
    mtype = media_type(content_type)
    if mtype.startswith("application/") and mtype.endswith("+json"):
        return "json"
    return _KINDS.get(mtype)


def charset_of(body: bytes, header_charset: str | None, kind: Kind) -> str:
    """The charset to decode with: the header's, else an HTML `<meta charset>` near the top,
    else UTF-8. Unknown names fall back to UTF-8."""
    candidates = [header_charset]
    if kind == "html":
        found = _META_CHARSET.search(body[:4096])
        candidates.append(found.group(1).decode("ascii") if found else None)
    for name in candidates:
        if name:
            try:
                return codecs.lookup(name).name
            except LookupError:
                continue
    return "utf-8"


def decode(body: bytes, header_charset: str | None, kind: Kind) -> str:
    return body.decode(charset_of(body, header_charset, kind), errors="replace")


def html_title(markup: str) -> str:
    found = _TITLE.search(markup[:100_000])
    if not found:
        return ""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def html_to_markdown(markup: str, base_url: str) -> str:
    """Readable Markdown of an HTML page: links made absolute against `base_url`, images,
    scripts and styles left out, no hard wrapping."""
    converter = html2text.HTML2Text(baseurl=base_url)
    converter.body_width = 0
    converter.ignore_images = True
    converter.unicode_snob = True
    converter.skip_internal_links = True
    return tidy(converter.handle(_NON_TEXT.sub(" ", markup)))


def tidy(text: str) -> str:
    """Trailing spaces off, runs of blank lines squeezed to one."""
    text = _TRAILING_SPACE.sub("\n", text.replace("\r\n", "\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def render_page(
    *, url: str, kind: Kind, text: str, title: str = "", cut_at: int | None = None
) -> str:
    """The tool result: title and final URL, then the body; says when the body was cut."""
    head = [f"Title: {title}"] if title else []
    head.append(f"URL: {url}")
    out = "\n".join(head) + "\n\n" + (text.strip() or "(the page has no text)")
    if cut_at is not None:
        out += f"\n\n[cut: only the first {cut_at:,} bytes of the page were read]"
    return out


def short_url(raw: str, limit: int = 48) -> str:
    """`https://www.example.com/docs/page?x=1` -> `example.com/docs/page?x=1`, at most `limit`
    characters (an ellipsis marks a cut). Anything unparsable is shortened as it is."""
    try:
        url = httpx.URL(raw.strip())
        host = url.host.removeprefix("www.")
        rest = url.raw_path.decode("ascii", "replace")
        shown = host + ("" if rest == "/" else rest) if host else raw.strip()
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = raw.strip()
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
