"""Why a turn ended early, named for what the caller does about it (most are upstream errors).

Every error carries `user_message`: one short sentence fit to show a person in Slack or
the terminal. Messages never contain the API key or raw upstream bodies.
"""

from __future__ import annotations

from bot.contracts.stream import Usage


class UpstreamError(Exception):
    """Base class. `retryable` errors may be retried before any text was shown."""

    user_message = "DeepSeek could not answer right now. Please try again."
    retryable = False
    notify_admins = False

    def __init__(
        self, detail: str = "", *, status: int | None = None, usage: Usage | None = None
    ) -> None:
        super().__init__(detail or self.user_message)
        self.detail = detail
        self.status = status
        self.usage = usage  # tokens the failed call was billed for, when the gateway said


class AuthError(UpstreamError):
    user_message = "The DeepSeek API key was rejected. An admin has been told."
    notify_admins = True


class BalanceExhausted(UpstreamError):
    user_message = "The DeepSeek balance is exhausted. An admin has been told."
    notify_admins = True


class RateLimited(UpstreamError):
    user_message = "DeepSeek is rate limiting us. Please try again in a minute."
    retryable = True

    def __init__(
        self, detail: str = "", *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, status=status)
        self.retry_after = retry_after


class BadRequest(UpstreamError):
    user_message = "DeepSeek rejected the request. An admin can find the details in the logs."


class UpstreamDown(UpstreamError):
    user_message = "DeepSeek is unavailable or overloaded right now. Please try again shortly."
    retryable = True


class UpstreamTimeout(UpstreamError):
    user_message = "DeepSeek took too long to answer. Please try again."


class StreamCut(UpstreamError):
    """The stream broke after text was shown; the caller keeps what arrived."""

    user_message = "The answer was cut off because the connection to DeepSeek broke."


class ContentFiltered(UpstreamError):
    user_message = "DeepSeek stopped this answer because of its content filter."


class LengthExceeded(UpstreamError):
    user_message = "The answer hit the maximum length and was cut off."


class OverBudget(UpstreamError):
    user_message = "You have reached your spending cap for now. An admin can raise it."


class ThreadBusy(UpstreamError):
    user_message = "This thread is still busy with an earlier question. Please try again shortly."


class Crashed(UpstreamError):
    """A bug on our side; the traceback is in the log, never in the message."""

    user_message = "Something went wrong on my side while answering. It has been logged."


class StoreDown(UpstreamError):
    user_message = "My memory store is unavailable right now. Please try again shortly."
    notify_admins = True
