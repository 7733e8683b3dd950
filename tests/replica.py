"""Runs the bot as a real process (`python -m bot`, HTTP mode), as a replica would run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import API_KEY, BOT_TOKEN, SIGNING_SECRET, free_port
from tests.slack_sender import SlackSender

ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    url: str
    slack: SlackSender

    async def healthy(self, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as http:
            while loop.time() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"replica exited with {self.proc.returncode}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("replica did not become healthy")

    async def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await self.slack.aclose()
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self.slack.aclose()


async def start_replica(slack_url: str, deepseek_url: str, redis_url: str, **env: str) -> Replica:
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "DEEPSEEK_API_KEY": API_KEY,
        "DEEPSEEK_BASE_URL": deepseek_url,
        "DEEPSEEK_GATEWAY": "deepseek",
        "REDIS_URL": redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env=full_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    replica = Replica(proc, url, SlackSender(f"{url}/slack/events", SIGNING_SECRET))
    await replica.healthy()
    return replica
