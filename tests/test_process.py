"""The bot as a real process: starts, serves /healthz, exits cleanly on SIGTERM."""

from __future__ import annotations

from tests.fakes.deepseek import FakeDeepSeek
from tests.fakes.slack import FakeSlack
from tests.replica import start_replica


async def test_process_starts_and_stops_on_sigterm(
    fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek, redis_url: str
) -> None:
    replica = await start_replica(fake_slack.url, fake_deepseek.url, redis_url)
    assert await replica.terminate() == 0
