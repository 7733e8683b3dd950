"""DeepSeek and OpenAI-compatible gateways: the streaming client, its SSE parser, prices."""
