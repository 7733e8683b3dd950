"""Foundation: configuration errors, /healthz, request signing, the embedded store."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from redis.asyncio import Redis

from bot.app import build_app
from bot.config import ConfigError, load_settings
from bot.store.connection import open_redis, redis_ok
from tests.conftest import RunningBot, make_settings


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"port": "seventy"}, "PORT"),
        ({"deepseek_base_url": "ftp://x"}, "DEEPSEEK_BASE_URL"),
        ({"default_model": "gpt5"}, "DEFAULT_MODEL"),
        ({"deepseek_gateway": "openai"}, "DEEPSEEK_GATEWAY"),
        ({"default_thinking": "maybe"}, "DEFAULT_THINKING"),
    ],
)
def test_malformed_setting_names_the_variable(overrides: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, **overrides)
    assert str(err.value).startswith(needle)
    assert "\n" not in str(err.value)


def test_missing_token_stops_start_with_one_line() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        build_app(make_settings(None, None, slack_bot_token=None))
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        build_app(make_settings(None, None, slack_signing_secret=None))


def test_cli_prints_one_line_and_no_secret(tmp_cwd: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-very-secret", "PORT": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_cwd),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "deepseek-slack: configuration error: PORT: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
    assert "very-secret" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("base_url", "gateway"),
    [
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.ourtoken.ai/v1", "ourtoken"),
        ("https://tokenhub.store/api/v1", "tokenhub"),
        ("http://127.0.0.1:9999", "custom"),
    ],
)
def test_gateway_inferred_from_host(base_url: str, gateway: str) -> None:
    assert load_settings(_env_file=None, deepseek_base_url=base_url).gateway == gateway


def test_lists_parse_from_commas() -> None:
    s = load_settings(_env_file=None, admin_user_ids="U1, U2,,")
    assert s.admin_user_ids == frozenset({"U1", "U2"})


async def test_healthz_up(bot: RunningBot) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{bot.url}/healthz")
    assert r.status_code == 200
    assert r.json()["redis"] == "up"


async def test_healthz_down_when_redis_unreachable(bot: RunningBot) -> None:
    bot.app.deps.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{bot.url}/healthz")
    assert r.status_code == 503
    assert r.json() == {"ok": False, "redis": "down", "inflight": 0}


async def test_unsigned_and_stale_requests_are_rejected(bot: RunningBot) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc"}).encode()
    bad = await bot.slack.post(body, "application/json", signature="v0=deadbeef")
    assert bad.status_code == 401
    stale = await bot.slack.post(body, "application/json", timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401


async def test_signed_url_verification(bot: RunningBot) -> None:
    body = json.dumps({"token": "t", "type": "url_verification", "challenge": "c-123"}).encode()
    r = await bot.slack.post(body, "application/json")
    assert r.status_code == 200
    assert r.json() == {"challenge": "c-123"}


async def test_embedded_store_works_without_redis_url() -> None:
    settings = load_settings(_env_file=None)
    assert settings.redis_url is None
    store = open_redis(settings)
    assert await redis_ok(store)
    await store.rpush("k", "a", "b")
    assert await store.lrange("k", 0, -1) == ["a", "b"]
    # redis-py's lock (Lua compare-and-delete) works on the embedded store too.
    async with store.lock("lock", timeout=5):
        assert await store.exists("lock")
    await store.aclose()


def test_empty_secret_counts_as_unset() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        build_app(make_settings(None, None, slack_bot_token=""))
