"""The `/deepseek` slash command: ack at once, run the command, reply ephemerally.

Replies go through `chat.postEphemeral` (Block Kit where the result has it); where the bot
cannot post (a channel it is not in, someone else's DM) the command's `response_url` is used
instead. `cost export` uploads the CSV into the admin's DM with the bot.
"""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.service import Caller, CommandResult, ExportFile
from bot.slack.admins import SlackAdmins
from bot.slack.errors import slack_error_code
from bot.slack.services import SlackServices

log = structlog.get_logger(__name__)

FAILED = "Sorry, that did not work: my store is unavailable. Please try again shortly."
CRASHED = "Sorry, something went wrong with that command. It has been logged."


def register(app: AsyncApp, services: SlackServices) -> None:
    admins, service = services.admins, services.commands

    @app.command("/deepseek")
    async def on_deepseek(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        caller = Caller(command["team_id"], command["user_id"], command.get("channel_id", ""))
        text = command.get("text") or ""
        try:
            result = await service.run_text(caller, text)
            if result.file is not None:
                result = await _deliver_export(client, admins, caller, result, result.file)
        except (RedisError, OSError) as exc:
            log.error("command_store_failed", error=type(exc).__name__)
            result = CommandResult(FAILED, ok=False)
        except Exception:  # the surface's edge: the caller gets a sentence, the log the detail
            log.exception("command_failed")
            result = CommandResult(CRASHED, ok=False)
        await _reply(client, respond, caller, result)


async def _deliver_export(
    client: AsyncWebClient,
    admins: SlackAdmins,
    caller: Caller,
    result: CommandResult,
    export: ExportFile,
) -> CommandResult:
    try:
        dm = await admins.dm(caller.user)
        await client.files_upload_v2(
            channel=dm,
            content=export.content,
            filename=export.filename,
            title=export.title,
            snippet_type="csv",
            initial_comment=result.text,
        )
    except SlackApiError as exc:
        log.warning("cost_export_upload_failed", error=slack_error_code(exc))
        return CommandResult("The CSV could not be uploaded to your DM. Please try again.")
    return CommandResult(f"{result.text} I sent it to you in a DM as `{export.filename}`.")


async def _reply(
    client: AsyncWebClient, respond: AsyncRespond, caller: Caller, result: CommandResult
) -> None:
    """Ephemeral reply to the caller: chat.postEphemeral, else the response_url."""
    text = result.summary if result.blocks else result.text
    try:
        await client.chat_postEphemeral(
            channel=caller.channel, user=caller.user, text=text, blocks=result.blocks
        )
        return
    except SlackApiError as exc:
        log.info("ephemeral_fallback", error=slack_error_code(exc))
    try:
        await respond(text=text, blocks=result.blocks, response_type="ephemeral")
    except Exception as exc:  # the response_url is the last way to reach the caller
        log.warning("command_reply_failed", error=type(exc).__name__)
