"""The bot's HTTP server: Slack's signed requests in, `/healthz` out, and the run loop that
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import time
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.slack.envelope import well_formed
from bot.slack.services import SlackServices
from bot.store.connection import redis_ok

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_S = 30.0
SIGNATURE_MAX_AGE_S = 300  # Slack's replay window


@dataclass
class BotApp:
    bolt: AsyncApp
    services: SlackServices

    @property
    def deps(self) -> Deps:
        return self.services.deps

    def _signed(self, request: web.Request, body: bytes) -> bool:
        """Slack's v0 signature over the raw bytes (which may not even be UTF-8)."""
        secret = self.deps.settings.slack_signing_secret
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        given = request.headers.get("X-Slack-Signature", "")
        if not stamp.isascii() or not stamp.isdigit():
            return False
        fresh = abs(time.time() - int(stamp)) <= SIGNATURE_MAX_AGE_S
        base = b"v0:" + stamp.encode() + b":" + body
        key = secret.get_secret_value().encode() if secret else b""
        expected = "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()
        return fresh and hmac.compare_digest(
            expected.encode(), given.encode("utf-8", "surrogateescape")
        )

    def web_app(self) -> web.Application:
        """aiohttp app: `POST /slack/events` (events, commands, actions) and `GET /healthz`."""
        app = web.Application()
        if not self.deps.settings.socket_mode:
            app.router.add_post("/slack/events", self._slack)
        app.router.add_get("/healthz", self._healthz)
        app.on_startup.append(self._open_slack_session)
        app.on_cleanup.append(self._close_slack_session)
        return app

    async def _open_slack_session(self, _: web.Application) -> None:
        """One pooled HTTP session for every Slack Web API call (Bolt's per-request clients
        copy it). Without it slack_sdk opens, and closes, a session per call: a new TCP and
        TLS connection to Slack for every appendStream."""
        slack = self.deps.slack
        if slack is not None and slack.session is None:
            slack.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=slack.timeout)
            )

    async def _close_slack_session(self, _: web.Application) -> None:
        # Runs at runner cleanup, after answers in flight were drained.
        slack = self.deps.slack
        if slack is not None and slack.session is not None:
            await slack.session.close()
            slack.session = None

    async def _slack(self, request: web.Request) -> web.Response:
        # The signature is checked here, on the raw bytes, before Bolt parses anything: Bolt's
        # parser and middleware assume well-typed payloads (an int `user` raises TypeError, a
        # non-numeric timestamp ValueError) and answer 500, which makes Slack retry.
        if not self._signed(request, await request.read()):
            return web.Response(status=401)
        try:
            bolt_request = await to_bolt_request(request)
        except Exception as exc:
            log.warning("slack_request_malformed", error=type(exc).__name__)
            return web.Response(status=400)
        if not well_formed(bolt_request.body):
            log.warning("slack_request_malformed", error="shape")
            return web.Response(status=400)
        bolt_response = await self.bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def _healthz(self, request: web.Request) -> web.Response:
        up = await redis_ok(self.deps.redis)
        body = {"ok": up, "redis": "up" if up else "down", "inflight": len(self.deps.inflight)}
        return web.json_response(body, status=200 if up else 503)

    async def drain(self, timeout: float = SHUTDOWN_GRACE_S) -> None:
        """Wait (bounded) for answers in flight to finish."""
        pending = {t for t in self.deps.inflight if not t.done()}
        if pending:
            log.info("shutdown_draining", inflight=len(pending))
            await asyncio.wait(pending, timeout=timeout)

    async def aclose(self) -> None:
        await self.drain()
        await self.deps.aclose()


async def serve(bot: BotApp) -> None:
    """Run until SIGTERM/SIGINT: HTTP mode (events + healthz) or Socket Mode (+ healthz)."""
    settings = bot.deps.settings
    runner = web.AppRunner(bot.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    socket_handler = None
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert settings.slack_app_token is not None
        socket_handler = AsyncSocketModeHandler(
            bot.bolt, settings.slack_app_token.get_secret_value()
        )
        await socket_handler.connect_async()  # type: ignore[no-untyped-call]
    log.info(
        "started",
        mode="socket" if settings.socket_mode else "http",
        port=settings.port,
        gateway=settings.gateway,
        store="redis" if settings.redis_url else "embedded",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    # Stop taking new events first, then let answers in flight finish.
    if socket_handler is not None:
        await socket_handler.close_async()  # type: ignore[no-untyped-call]
    await site.stop()
    await bot.aclose()
    await runner.cleanup()
    log.info("stopped")
