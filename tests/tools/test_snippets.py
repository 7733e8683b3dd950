"""SlackSurface, read_snippet and post_snippet against the fake Slack files API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.tool import SharedFile, ToolFailure
from bot.slack.surface import SlackSurface
from tests.conftest import BOT_TOKEN
from tests.fakes.slack import FakeSlack
from tests.tools.conftest import THREAD, NetLog, context, tool_settings
from tools.snippets import (
    PostSnippetArgs,
    ReadSnippetArgs,
    find_file,
    post_snippet_tool,
    read_snippet_tool,
)

MAIN_PY = b"import sys\n\n\ndef main() -> None:\n    print(sys.argv)\n"


@pytest.fixture
async def slack_client(fake_slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.url)


def surface(
    client: AsyncWebClient, http: httpx.AsyncClient, *, token: str = BOT_TOKEN, **kw: Any
) -> SlackSurface:
    return SlackSurface(client, THREAD.channel, THREAD.thread_ts, token, http, **kw)


def shared(info: dict[str, Any]) -> SharedFile:
    return SharedFile(info["id"], info["name"], info["filetype"], info["size"])


# --- SlackSurface.read_file ------------------------------------------------------------------


async def test_read_file_downloads_with_the_bot_token(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    info = fake_slack.add_file("main.py", MAIN_PY, filetype="python")
    s = surface(slack_client, http)
    f, text = await s.read_file(info["id"])
    assert f == SharedFile(info["id"], "main.py", "python", len(MAIN_PY))
    assert text == MAIN_PY.decode()
    await s.read_file(info["id"])  # a second read in the same turn is served from memory
    assert len(fake_slack.calls_of("files.info")) == 1


@pytest.mark.parametrize(
    ("name", "content", "filetype", "edit", "message"),
    [
        (
            "photo.png",
            b"\x89PNG\r\n",
            "png",
            {"mimetype": "image/png"},
            r"photo\.png is a binary file \(image/png\)",
        ),
        ("blob.bin", b"\x00\x01\x02", "binary", {}, r"blob\.bin is a binary file"),
        ("notes.txt", b"text\x00with a NUL", "text", {}, r"notes\.txt is a binary file; only text"),
        (
            "big.log",
            b"x" * 3000,
            "text",
            {},
            r"big\.log is too big to read \(3 KB; the limit is 2 KB\)",
        ),
        ("liar.log", b"y" * 3000, "text", {"size": 10}, r"liar\.log is too big to read"),
        ("doc.gdoc", b"", "gdoc", {"is_external": True}, r"stored outside Slack"),
        (
            "a.py",
            b"x = 1",
            "python",
            {"url_private": "http://127.0.0.2:9/steal"},
            r"no download link on Slack",
        ),
        (
            "b.py",
            b"x = 1",
            "python",
            {"url_private": "https://files.evil.test/x"},
            r"no download link on Slack",
        ),
    ],
)
async def test_unreadable_files_are_refused_with_a_reason(
    name: str,
    content: bytes,
    filetype: str,
    edit: dict[str, Any],
    message: str,
    fake_slack: FakeSlack,
    slack_client: AsyncWebClient,
    http: httpx.AsyncClient,
    netlog: NetLog,
) -> None:
    info = fake_slack.add_file(name, content, filetype=filetype)
    info.update(edit)
    with pytest.raises(ToolFailure, match=message):
        await surface(slack_client, http, max_bytes=2000).read_file(info["id"])
    # The bot token never goes anywhere but Slack.
    assert not any(host.startswith("127.0.0.2") for host, _ in netlog.connects())


async def test_wrong_token_download_fails(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    info = fake_slack.add_file("main.py", MAIN_PY, filetype="python")
    with pytest.raises(ToolFailure, match=r"Could not download main\.py from Slack \(HTTP 302\)"):
        await surface(slack_client, http, token="xoxb-wrong").read_file(info["id"])


async def test_unknown_file_and_missing_scope(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    s = surface(slack_client, http)
    with pytest.raises(ToolFailure, match=r"Slack could not show the file F9999"):
        await s.read_file("F9999")
    fake_slack.fail("files.info", "missing_scope")
    with pytest.raises(ToolFailure, match=r"missing_scope \(the app needs the files:read scope\)"):
        await s.read_file("F0001")


# --- prepare_files: what a message's files add to the turn --------------------------------


async def test_prepare_files_inlines_small_files_and_defers_the_rest(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    small = fake_slack.add_file("main.py", MAIN_PY, filetype="python")
    big_text = "".join(f"line {n}\n" for n in range(1000))
    big = fake_slack.add_file("server.log", big_text.encode(), filetype="text")
    image = fake_slack.add_file("shot.png", b"\x89PNG", filetype="png")
    image["mimetype"] = "image/png"
    event_files = [{"id": small["id"]}, big, {"id": image["id"], "name": "shot.png"}]
    plan = await surface(slack_client, http).prepare_files(event_files, inline_chars=500)
    assert plan.note == (
        "Shared file `main.py` (python):\n```python\n" + MAIN_PY.decode().rstrip() + "\n```\n\n"
        f"Shared file `server.log` (text, 1,001 lines, 9 KB, id {big['id']}) is not shown "
        "here; read it with read_snippet.\n\n"
        "Shared file `shot.png` was not read: shot.png is a binary file (image/png); only text "
        "files can be read."
    )
    assert [f.name for f in plan.files] == ["main.py", "server.log"]


async def test_prepare_files_without_files(
    slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    plan = await surface(slack_client, http).prepare_files([], inline_chars=500)
    assert plan.note == "" and plan.files == ()


# --- read_snippet ------------------------------------------------------------------------------


async def test_read_snippet_by_id_and_by_name(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    info = fake_slack.add_file("main.py", MAIN_PY, filetype="python")
    ctx = context(tool_settings(), http, surface=surface(slack_client, http), files=[shared(info)])
    tool = read_snippet_tool()
    by_id = await tool.run(ReadSnippetArgs(file=info["id"]), ctx)
    by_name = await tool.run(ReadSnippetArgs(file="MAIN.PY"), ctx)
    assert (
        by_id
        == by_name
        == ("main.py (python, all 5 lines):\n```python\n" + MAIN_PY.decode().rstrip() + "\n```")
    )
    assert tool.label(ReadSnippetArgs(file="main.py")) == "Reading snippet main.py"


async def test_read_snippet_pages_through_a_long_file(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    text = "".join(f"row {n:04d} " + "." * 40 + "\n" for n in range(1, 201))
    info = fake_slack.add_file("data.csv", text.encode(), filetype="csv")
    settings = tool_settings(tool_output_cap=2000)
    ctx = context(settings, http, surface=surface(slack_client, http), files=[shared(info)])
    tool = read_snippet_tool()
    seen: list[str] = []
    start = 1
    while True:
        out = await tool.run(ReadSnippetArgs(file="data.csv", start_line=start), ctx)
        assert len(out) <= settings.tool_output_cap
        seen += [line for line in out.splitlines() if line.startswith("row ")]
        more = re.search(r"start_line=(\d+)\]$", out)
        if not more:
            break
        start = int(more.group(1))
    assert seen == text.splitlines()  # every line once, in order
    with pytest.raises(ToolFailure, match=r"start_line 500 is past the end \(the file has 200"):
        await tool.run(ReadSnippetArgs(file="data.csv", start_line=500), ctx)


async def test_read_snippet_only_opens_files_of_this_conversation(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    mine = fake_slack.add_file("main.py", MAIN_PY, filetype="python")
    other = fake_slack.add_file("secret.env", b"TOKEN=abc", filetype="text")
    ctx = context(tool_settings(), http, surface=surface(slack_client, http), files=[shared(mine)])
    with pytest.raises(ToolFailure, match=r"No shared file is called 'F0002'.*main\.py \(F0001\)"):
        await read_snippet_tool().run(ReadSnippetArgs(file=other["id"]), ctx)
    assert all(c.args.get("file") != other["id"] for c in fake_slack.calls_of("files.info"))


async def test_read_snippet_without_files_or_surface(http: httpx.AsyncClient) -> None:
    for ctx in (
        context(tool_settings(), http),
        context(tool_settings(), http, files=[SharedFile("F1", "a.py", "python", 3)]),
    ):
        with pytest.raises(ToolFailure, match="No files are shared in this conversation"):
            await read_snippet_tool().run(ReadSnippetArgs(file="a.py"), ctx)


async def test_read_snippet_passes_on_the_surface_refusal(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    info = fake_slack.add_file("blob.bin", b"\x00\x00", filetype="binary")
    ctx = context(tool_settings(), http, surface=surface(slack_client, http), files=[shared(info)])
    with pytest.raises(ToolFailure, match=r"blob\.bin is a binary file"):
        await read_snippet_tool().run(ReadSnippetArgs(file="blob.bin"), ctx)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [("F2", "F2"), ("b.py", "F2"), ("A.PY", "F3"), (" F1 ", "F1"), ("c.py", None), ("", None)],
)
def test_find_file(wanted: str, expected: str | None) -> None:
    files = [
        SharedFile("F1", "a.py", "python", 1),
        SharedFile("F2", "b.py", "python", 1),
        SharedFile("F3", "a.py", "python", 1),  # shared later under the same name
    ]
    found = find_file(files, wanted)
    assert (found.id if found else None) == expected


# --- post_snippet ------------------------------------------------------------------------------


async def test_post_snippet_uploads_into_the_thread(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    code = "\n".join(f"print({n})" for n in range(60))
    ctx = context(tool_settings(), http, surface=surface(slack_client, http))
    tool = post_snippet_tool()
    args = PostSnippetArgs(title="Sixty prints", language="py", content=code)
    out = await tool.run(args, ctx)
    assert out == (
        "Posted the snippet “Sixty prints” (60 lines, python) in the thread. People see it "
        "there: do not repeat its code in the answer."
    )
    (upload,) = fake_slack.uploads.values()
    assert upload["content"] == code.encode()
    assert upload["filename"] == "sixty-prints.py"
    assert upload["snippet_type"] == "python"
    assert upload["title"] == "Sixty prints"
    assert (upload["channel"], upload["thread_ts"]) == (THREAD.channel, THREAD.thread_ts)
    assert fake_slack.calls_of("files.getUploadURLExternal")[0].token == BOT_TOKEN
    assert tool.label(args) == "Posting snippet “Sixty prints”"


async def test_post_snippet_failures(
    fake_slack: FakeSlack, slack_client: AsyncWebClient, http: httpx.AsyncClient
) -> None:
    ctx = context(tool_settings(), http, surface=surface(slack_client, http))
    args = PostSnippetArgs(title="t", language="go", content="package main")
    fake_slack.fail("files.getUploadURLExternal", "missing_scope")
    with pytest.raises(ToolFailure, match=r"missing_scope \(the app needs the files:write scope\)"):
        await post_snippet_tool().run(args, ctx)
    fake_slack.fail("files.completeUploadExternal", "channel_not_found")
    with pytest.raises(ToolFailure, match="Slack did not take the snippet: channel_not_found"):
        await post_snippet_tool().run(args, ctx)
    with pytest.raises(ToolFailure, match="Snippets cannot be posted here"):
        await post_snippet_tool().run(args, context(tool_settings(), http))


def test_post_snippet_description_asks_for_long_code() -> None:
    tool = post_snippet_tool()
    assert "longer than about 40 lines" in tool.description
    params = tool.schema()["function"]["parameters"]
    assert params["required"] == ["title", "content"]
