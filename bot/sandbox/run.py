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
from bot.sandbox.discord.world import SKU_SUBSCRIPTION

log = logging.getLogger(__name__)
SANDBOX_TOKEN = "sandbox-token"  # the loopback Discord accepts any token  # noqa: S105


SANDBOX_PACKS = {1_300_000_000_000_000_001: ("100 credits", 100), 1_300_000_000_000_000_002: ("1000 credits", 1000)}
SANDBOX_SUBSCRIPTION = (1_300_000_000_000_000_003, "Supporter (200 a day)", 200)


def sandbox_store(server: LoopbackDiscord, settings: Settings) -> dict[str, str]:
    """Credit packs and a subscription on sale out of the box, unless CREDIT_PACKS / SUBSCRIPTION_SKUS are set
    (then those SKU ids must exist in the loopback world: the defaults are added either way)."""
    for sku_id, (name, _) in SANDBOX_PACKS.items():
        if sku_id not in server.skus:
            server.add_sku(name, sku_id=sku_id)
    sub_id, sub_name, daily = SANDBOX_SUBSCRIPTION
    if sub_id not in server.skus:
        server.add_sku(sub_name, sku_id=sub_id, kind=SKU_SUBSCRIPTION)
    update: dict[str, str] = {}
    if not settings.credit_packs:
        update["credit_packs"] = ",".join(f"{sku}:{credits}" for sku, (_, credits) in SANDBOX_PACKS.items())
    if not settings.subscription_skus:
        update["subscription_skus"] = f"{sub_id}:{daily}"
    return update


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
        **sandbox_store(server, settings),
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
