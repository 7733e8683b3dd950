"""The terminal chat (`python -m bot chat`): the same engine without Slack."""
