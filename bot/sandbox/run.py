"""`make run` without DISCORD_TOKEN: loopback Discord + the real bot + the web console."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import SecretStr

from bot.client import VideoBot
from bot.config import Settings
from bot.discord_api import point_discord_py_at
from bot.sandbox.console import Console
from bot.sandbox.discord import LoopbackDiscord

log = logging.getLogger(__name__)
SANDBOX_TOKEN = "sandbox-token"  # the loopback Discord accepts any token  # noqa: S105


async def start_sandbox(settings: Settings) -> tuple[LoopbackDiscord, Console, VideoBot, asyncio.Task[None]]:
    """Start everything and return once the bot is ready (also used by tests)."""
    try:
        server = LoopbackDiscord(data_dir=settings.sandbox_dir)
    except OSError as error:
        raise SystemExit(f"SANDBOX_DIR={settings.sandbox_dir} cannot be used: {error.strerror or error}") from None
    await server.start()
    console = Console(server, settings.video_dir)
    await console.start(settings.sandbox_host, settings.sandbox_port)
    sandbox = settings.model_copy(update={
        "discord_token": SecretStr(SANDBOX_TOKEN),
        "discord_api_base": server.api_base,
        "discord_gateway_url": server.gateway_url,
        "reference_image_hosts": "127.0.0.1",
        "reference_image_allow_private": True,
        "public_base_url": settings.public_base_url or console.url,
    })
    point_discord_py_at(sandbox.discord_api_base, sandbox.discord_gateway_url)
    bot = VideoBot(sandbox, serve_web=False)
    console.bot = bot
    await bot.login(SANDBOX_TOKEN)
    task = asyncio.create_task(bot.connect())
    await bot.wait_until_ready()
    return server, console, bot, task


async def run_sandbox(settings: Settings) -> None:
    server, console, bot, task = await start_sandbox(settings)
    print(f"Sandbox ready: open {console.url} (no DISCORD_TOKEN set; Discord is simulated on loopback).",
          flush=True)
    try:
        await task
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await console.stop()
        await server.stop()  # saves the world one last time
