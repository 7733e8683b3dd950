"""deepseek-slack: DeepSeek V4 in Slack threads, streamed, with Redis-backed memory."""
