"""The `Surface` tools see in a Slack thread: snippets posted into it, shared files read from it.

Reading a file is `files.info` (needs `files:read`), then a GET of its `url_private` with the bot
token — sent only to Slack's own hosts. Text types only, at most `max_bytes`; anything else is
refused with a `ToolFailure` the model (or the person, through `prepare_files`) can read.
Posting is `files_upload_v2` with a `snippet_type` (needs `files:write`).

Slack handlers call `prepare_files(event_files, inline_chars=...)` once per message: small text
files are inlined into the turn's text, and every readable file goes to `Turn.files` so
`read_snippet` can open it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx
import structlog
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.contracts.tool import SharedFile, ToolFailure
from bot.core.shared_files import (
    FilePlan,
    LoadedFile,
    looks_binary,
    plan_files,
    shared_file,
    snippet_filename,
    snippet_type,
    text_problem,
)

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 1_000_000
# Slack serves `url_private` from these domains (GovSlack from slack-gov.com).
_SLACK_DOMAINS = ("slack.com", "slack-gov.com")


class SlackSurface:
    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        bot_token: str,
        http: httpx.AsyncClient,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 20.0,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self._token = bot_token
        self.http = http
        self.max_bytes = max_bytes
        self.timeout = timeout
        # Texts already downloaded in this turn: prepare_files reads them, read_snippet re-reads.
        self._texts: dict[str, tuple[SharedFile, str]] = {}

    # --- Surface ------------------------------------------------------------------------

    async def post_snippet(self, title: str, language: str, content: str) -> str:
        """Upload `content` as a snippet in the thread; return a confirmation for the model."""
        kind = snippet_type(language)
        try:
            await self.client.files_upload_v2(
                content=content,
                filename=snippet_filename(title, language),
                title=title,
                snippet_type=kind,
                channel=self.channel,
                thread_ts=self.thread_ts,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            log.warning("snippet_upload_failed", error=error)
            hint = " (the app needs the files:write scope)" if error == "missing_scope" else ""
            raise ToolFailure(f"Slack did not take the snippet: {error}{hint}.") from None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("snippet_upload_failed", error=type(exc).__name__)
            raise ToolFailure("Slack did not take the snippet: the upload failed.") from None
        lines = content.count("\n") + 1
        return (
            f"Posted the snippet “{title}” ({lines} lines, {kind}) in the thread. People see it "
            "there: do not repeat its code in the answer."
        )

    async def read_file(self, file_id: str) -> tuple[SharedFile, str]:
        """A shared file and its text. Raises ToolFailure when Slack does not know the file,
        it is not text, it is bigger than `max_bytes`, or the download fails."""
        cached = self._texts.get(file_id)
        if cached is not None:
            return cached
        info = await self._info(file_id)
        text = await self._download(info)
        result = (shared_file(info), text)
        self._texts[file_id] = result
        return result

    # --- for the Slack handlers ---------------------------------------------------------

    async def load_files(self, files: Sequence[Mapping[str, Any]]) -> list[LoadedFile]:
        """Read the files of a message (Slack file objects from the event, or just `{"id"}`),
        concurrently; an unreadable one carries the reason instead of its text."""

        async def one(obj: Mapping[str, Any]) -> LoadedFile:
            file_id = str(obj.get("id", ""))
            try:
                f, text = await self.read_file(file_id)
            except ToolFailure as exc:
                return LoadedFile(shared_file(obj), None, str(exc))
            return LoadedFile(f, text)

        return list(await asyncio.gather(*(one(obj) for obj in files if obj.get("id"))))

    async def prepare_files(
        self, files: Sequence[Mapping[str, Any]], *, inline_chars: int
    ) -> FilePlan:
        """What the turn gets from a message's files: `plan.note` to append to its text and
        `plan.files` for `Turn.files`."""
        return plan_files(await self.load_files(files), inline_chars=inline_chars)

    # --- internals ----------------------------------------------------------------------

    async def _info(self, file_id: str) -> dict[str, Any]:
        try:
            response = await self.client.files_info(file=file_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            hint = " (the app needs the files:read scope)" if error == "missing_scope" else ""
            raise ToolFailure(f"Slack could not show the file {file_id}: {error}{hint}.") from None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise ToolFailure(
                f"Slack could not show the file {file_id} ({type(exc).__name__})."
            ) from None
        info = response.get("file")
        if not isinstance(info, dict):
            raise ToolFailure(f"Slack could not show the file {file_id}.")
        return info

    def _slack_host(self, url: httpx.URL) -> bool:
        """Whether `url` is Slack's (the bot token may be sent there): a Slack domain over
        https, or the Web API's own host (a test server stands in for Slack)."""
        api = httpx.URL(self.client.base_url)
        if url.host == api.host and url.port == api.port and url.scheme == api.scheme:
            return True
        host = url.host.lower()
        return url.scheme == "https" and any(
            host == d or host.endswith("." + d) for d in _SLACK_DOMAINS
        )

    async def _download(self, info: Mapping[str, Any]) -> str:
        problem = text_problem(info, self.max_bytes)
        name = str(info.get("name") or info.get("id"))
        if problem:
            raise ToolFailure(problem + ".")
        try:
            url = httpx.URL(str(info.get("url_private") or ""))
        except httpx.InvalidURL:
            url = httpx.URL("")
        if not url.host or not self._slack_host(url):
            raise ToolFailure(f"{name} has no download link on Slack.")
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self.http.stream(
                "GET", url, headers=headers, follow_redirects=False, timeout=self.timeout
            ) as response:
                if response.status_code != 200:
                    log.warning("file_download_failed", status=response.status_code)
                    raise ToolFailure(
                        f"Could not download {name} from Slack (HTTP {response.status_code})."
                    )
                content_type = response.headers.get("content-type", "")
                html_file = str(info.get("mimetype") or "").startswith("text/html")
                if content_type.startswith("text/html") and not html_file:
                    # Slack answers a bad or missing token with its sign-in page.
                    raise ToolFailure(f"Slack would not let the app download {name}.")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ToolFailure(f"{name} is too big to read.")
        except httpx.HTTPError as exc:
            raise ToolFailure(
                f"Could not download {name} from Slack ({type(exc).__name__})."
            ) from None
        if looks_binary(bytes(body)):
            raise ToolFailure(f"{name} is a binary file; only text files can be read.")
        return body.decode("utf-8", errors="replace")
