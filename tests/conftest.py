"""Shared fixtures: a real Redis, the fake Slack and DeepSeek servers, a running bot, and the
signed-request sender. Everything listens on 127.0.0.1 only. Also: structlog and the root
logger reset around every test, and `settle()`, the wait for the bot's background work."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from aiohttp import web
from redis.asyncio import Redis

from bot.app import build_app
from bot.config import Settings
from bot.slack.server import BotApp
from tests.fakes.deepseek import FakeDeepSeek
from tests.fakes.slack import FakeSlack
from tests.slack_sender import SlackSender

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"
API_KEY = "sk-test-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A `redis-server` child process on a free port, in a temp dir (restartable for drills)."""

    def __init__(self, *, appendonly: bool = False, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit(
                "redis-server is missing: run scripts/test.sh or apt-get install redis-server",
                2,
            )
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="dsk-redis-")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            self.dir,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def redis_url(worker_id: str) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        # One database per xdist worker (gw0, gw1, …): each test flushes its own.
        db = int(worker_id[2:]) if worker_id.startswith("gw") else 0
        yield urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{db}").geturl()
        return
    server = RedisProcess()
    server.start()
    yield server.url
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    fake.add_user("U1", "Alice")
    fake.add_user("U2", "Bob")
    fake.add_user("UADMIN", "Ada", is_admin=True)
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_deepseek() -> AsyncIterator[FakeDeepSeek]:
    fake = FakeDeepSeek()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what a test passes: no SLACK_*/DEEPSEEK_* from the machine."""
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields} and name != "REDIS_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(Settings.model_config, "env_file", None)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Every test starts from structlog's defaults (no processors, levels or context left by
    another test) and leaves the root logger's handlers and level as it found them. Tests
    read log events with `structlog.testing.capture_logs()`, never by replacing a module's
    `log`."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    # A configuration that caches loggers (bot.log.configure_logging does) freezes every
    # module logger used meanwhile with it, for the rest of this worker: no reset undoes that.
    cached = structlog.get_config()["cache_logger_on_first_use"]
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    assert not cached, (
        "this test configured structlog with cache_logger_on_first_use=True (configure_logging "
        "or `main()` in-process): loggers stay cached for later tests; run it in a subprocess"
    )


def bot_tasks() -> set[asyncio.Task[Any]]:
    """The tasks on this loop doing the bot's work in the background: all of them but the
    running test's own and aiohttp's per-connection server handlers (the fake servers' and
    the bot's own HTTP server's: a keep-alive connection's handler idles until the client
    closes it)."""
    me = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not me
        and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    }


async def settle(timeout: float = 20.0) -> None:
    """Wait until the bot's background work is over: every task from `bot_tasks()` has
    finished, and those they started, round after round. Once Slack's ack came back, a
    listener the event started exists as a task (Bolt creates it before acking), so after
    this returns "nothing happened" means the event was handled and did nothing. Driven by the
    tasks themselves (awaits them); `timeout` only turns a hang into a clear failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending := bot_tasks():
        _, still = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        if still:
            raise AssertionError(f"bot tasks still running after {timeout} s: {still}")


def make_settings(
    fake_slack: FakeSlack | None, fake_deepseek: FakeDeepSeek | None, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "deepseek_api_key": API_KEY,
        "deepseek_gateway": "deepseek",
        "deepseek_max_retries": 2,
        "deepseek_retry_backoff": 0.01,  # retries in tests wait milliseconds, not seconds
        "deepseek_total_timeout": 20.0,
        "admin_user_ids": "UADMIN",
        "log_format": "json",
    }
    if fake_slack is not None:
        values["slack_api_url"] = fake_slack.url
    if fake_deepseek is not None:
        values["deepseek_base_url"] = fake_deepseek.url
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek, redis_url: str) -> Settings:
    return make_settings(fake_slack, fake_deepseek, redis_url=redis_url)


@dataclass
class RunningBot:
    app: BotApp
    url: str
    slack: SlackSender
    fake_slack: FakeSlack
    fake_deepseek: FakeDeepSeek


async def start_bot(
    settings: Settings, redis: Redis | None, fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> tuple[RunningBot, web.AppRunner]:
    app = build_app(settings, redis=redis)
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    sender = SlackSender(f"{url}/slack/events", SIGNING_SECRET)
    return RunningBot(app, url, sender, fake_slack, fake_deepseek), runner


async def stop_bot(running: RunningBot, runner: web.AppRunner, *, drain_s: float = 5) -> None:
    """Undo `start_bot`: the sender, the answers in flight (bounded), the bot's HTTP pools
    (Redis is the test's: `owns_redis` is False), the server."""
    await running.slack.aclose()
    await running.app.drain(timeout=drain_s)
    await running.app.deps.aclose()
    await runner.cleanup()


@pytest.fixture
async def bot(
    settings: Settings, redis: Redis, fake_slack: FakeSlack, fake_deepseek: FakeDeepSeek
) -> AsyncIterator[RunningBot]:
    """The bot in HTTP mode on a free port, wired to real Redis and both fakes."""
    running, runner = await start_bot(settings, redis, fake_slack, fake_deepseek)
    yield running
    await stop_bot(running, runner)


@pytest.fixture
def tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
