"""Slack: the HTTP edge, incoming payloads, turns in threads, streaming, formatting, blocks."""
