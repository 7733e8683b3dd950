"""What a failed Slack Web API call is called: the exceptions a call may raise, and the code
that goes into the log line for one."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError, SlackClientError

# Every exception a Slack Web API call may raise once slack_sdk's own retries are spent: an
# error answer, a client-side failure, the network, a timeout.
SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, TimeoutError)


def slack_error_code(exc: BaseException) -> str:
    """Slack's error code (`channel_not_found`), else the HTTP status, else the exception's
    class name. Never the response body: it may echo message text."""
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
        return f"http_{exc.response.status_code}"
    return type(exc).__name__
