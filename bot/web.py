"""The bot's own small HTTP server at WEB_HOST:WEB_PORT (on unless WEB_ENABLED=false).

Always: `/metrics` (Prometheus), `/healthz` and `/readyz` for orchestrators. With PUBLIC_BASE_URL it
also serves stored videos under signed, expiring names (bot/links.py) and receives provider
callbacks. A callback is only a wake-up: it makes the job due now and wakes the poller, which then
asks the provider itself (polling stays the source of truth). The server may face the internet, so
every malformed request is answered 4xx with one INFO line, never a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import metrics
from bot.providers.kling import callback_token
from bot.providers.webhooks import ReplayGuard, WebhookError, verify
from storage import JobState

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)

SERVABLE = frozenset({JobState.DOWNLOADED, JobState.DELIVERED, JobState.UNDELIVERED})
VIDEO_HEADERS = {
    "Content-Type": "video/mp4",
    "Cache-Control": "private, max-age=3600",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def serve_video(bot: VideoBot, name: str) -> web.StreamResponse:
    """Answer a `/videos/<name>` request: 404 unless `name` is a live signed link to a job's existing result.

    The file is found from the job row, never from the requested name, so no encoding of a path can
    reach another file; a canceled or failed job's file is never served even if it lingered on disk.
    """
    job_id = bot.delivery.links.job_id(name)
    if job_id is None:
        raise web.HTTPNotFound
    job = await bot.store.jobs.get(job_id)
    if job is None or job.state not in SERVABLE or not job.result_path:
        raise web.HTTPNotFound
    root = bot.settings.video_dir.resolve()
    path = Path(job.result_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound
    return web.FileResponse(path, headers=VIDEO_HEADERS)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (invalid, a list, absurdly nested)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _refuse(route: str, status: int, reason: str) -> web.Response:
    log.info("%s callback refused (%d): %s", route, status, reason)
    return web.json_response({"error": reason}, status=status)


DB_TIMEOUT = 2.0  # a health check must answer well within an orchestrator's own timeout


class WebServer:
    def __init__(self, bot: VideoBot, *, serve_files: bool = True) -> None:
        """`serve_files=False`: only metrics and health (no PUBLIC_BASE_URL, or the sandbox serves videos)."""
        self.bot = bot
        self.serve_files = serve_files
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.replays = ReplayGuard()

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        if self.serve_files:
            app.router.add_get("/videos/{name}", self.video)
            app.router.add_post("/webhooks/replicate", self.replicate)
            app.router.add_post("/webhooks/kling", self.kling)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bot.settings.web_host, self.bot.settings.web_port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.Response:
        recorder = self.bot.metrics
        try:
            await asyncio.wait_for(recorder.refresh(self.bot.store), DB_TIMEOUT)
        except Exception as error:  # the in-memory families are still worth serving
            log.warning("metrics: database-wide families not refreshed (%s)", type(error).__name__)
        body = recorder.render()
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _problems(self) -> list[str]:
        """Why this process is unhealthy: a stalled event loop or a database that does not answer."""
        problems = []
        stalled = self.bot.loop_monitor.stalled_for()
        if stalled > self.bot.settings.health_max_loop_lag_seconds:
            problems.append(f"event loop stalled {stalled:.1f} s")
        try:
            await asyncio.wait_for(self.bot.store.ping(), DB_TIMEOUT)
        except Exception as error:
            problems.append(f"database: {type(error).__name__}")
        return problems

    def _health(self, problems: list[str]) -> web.Response:
        if problems:
            return web.json_response({"ok": False, "problems": problems}, status=503)
        return web.json_response({"ok": True})

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the event loop turns and the database answers (liveness)."""
        return self._health(await self._problems())

    async def readyz(self, request: web.Request) -> web.Response:
        """Liveness plus, for roles with a gateway, a live gateway connection (readiness)."""
        problems = await self._problems()
        if self.bot.settings.bot_role != "worker" and not self.bot.gateway_connected():
            problems.append("gateway not connected")
        return self._health(problems)

    # -- videos and callbacks -----------------------------------------------------------------

    async def video(self, request: web.Request) -> web.StreamResponse:
        return await serve_video(self.bot, request.match_info["name"])

    @staticmethod
    async def _body(request: web.Request) -> bytes | None:
        """The body, or None when it is over the server's limit (callbacks are small JSON documents)."""
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    async def _nudge(self, route: str, payload: dict[str, Any]) -> web.Response:
        """Hand a verified callback to the poller; 400 when it names no provider job."""
        try:
            woke = await self.bot.poller.nudge(route, payload)
        except ValueError as error:
            return _refuse(route, 400, str(error))
        return web.json_response({"ok": True, "woke": woke})

    async def replicate(self, request: web.Request) -> web.Response:
        secret = self.bot.settings.replicate_webhook_secret
        if secret is None:
            raise web.HTTPNotFound
        body = await self._body(request)
        if body is None:
            return _refuse("replicate", 413, "body too large")
        try:
            message_id = verify(secret.get_secret_value(), request.headers, body)
        except WebhookError as error:
            return _refuse("replicate", 401, str(error))
        prediction = _json_object(body)
        if prediction is None:
            return _refuse("replicate", 400, "body is not a JSON object")
        if not self.replays.first_time(message_id):
            log.info("replicate callback %s replayed; ignored", message_id[:64])
            return web.json_response({"ok": True, "woke": False, "replayed": True})
        return await self._nudge("replicate", prediction)

    async def kling(self, request: web.Request) -> web.Response:
        if self.bot.settings.kling_secret_key is None:
            raise web.HTTPNotFound  # callbacks are only configured with Kling's own keys
        given = request.query.get("token", "").encode("utf-8", "replace")  # any junk compares as bytes
        if not hmac.compare_digest(given, callback_token(self.bot.settings).encode()):
            return _refuse("kling", 401, "invalid token")
        body = await self._body(request)
        if body is None:
            return _refuse("kling", 413, "body too large")
        data = _json_object(body)
        if data is None:
            return _refuse("kling", 400, "body is not a JSON object")
        return await self._nudge("kling", data)
