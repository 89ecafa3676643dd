"""The bot's own small HTTP server, on when PUBLIC_BASE_URL is set.

It serves stored videos (the links posted for files over Discord's upload limit) and receives
provider callbacks. A callback is only a wake-up: it makes the job due now and wakes the poller,
which then asks the provider itself (polling stays the source of truth).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from bot.providers.kling import callback_token
from bot.providers.webhooks import WebhookError, verify
from storage import JobState

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
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

    async def video(self, request: web.Request) -> web.StreamResponse:
        root = self.bot.settings.video_dir.resolve()
        path = (root / request.match_info["name"]).resolve()
        if not path.is_relative_to(root) or path.suffix != ".mp4" or not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    async def _wake(self, provider: str, provider_job_ids: list[str]) -> bool:
        for provider_job_id in provider_job_ids:
            job = await self.bot.store.jobs.by_provider_job(provider, provider_job_id)
            if job is not None and job.state in (JobState.SUBMITTED, JobState.RUNNING):
                await self.bot.store.jobs.update(job.id, next_run_at=time.time())
                self.bot.poller.wake()
                return True
        return False

    async def replicate(self, request: web.Request) -> web.Response:
        secret = self.bot.settings.replicate_webhook_secret
        body = await request.read()
        if secret is None:
            return web.json_response({"error": "webhooks are not configured"}, status=404)
        try:
            verify(secret.get_secret_value(), request.headers, body)
            prediction = json.loads(body)
        except WebhookError as error:
            log.warning("replicate webhook refused: %s", error)
            return web.json_response({"error": "invalid signature"}, status=401)
        except ValueError:
            return web.json_response({"error": "invalid body"}, status=400)
        woke = await self._wake("replicate", [str(prediction.get("id", ""))])
        return web.json_response({"ok": True, "woke": woke})

    async def kling(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.query.get("token", ""), callback_token(self.bot.settings)):
            return web.json_response({"error": "invalid token"}, status=401)
        try:
            data = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "invalid body"}, status=400)
        task_id = str(data.get("task_id") or (data.get("data") or {}).get("task_id") or "")
        woke = await self._wake("kling", [f"text2video:{task_id}", f"image2video:{task_id}"])
        return web.json_response({"ok": True, "woke": woke})
