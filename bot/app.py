"""Process start-up: the real bot with a token, otherwise the offline sandbox."""

from __future__ import annotations

import asyncio
import logging
import sys

import discord

from bot.client import VideoBot
from bot.config import Settings
from bot.logs import setup_logging

log = logging.getLogger(__name__)


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.discord_token, settings.replicate_api_token, settings.openai_api_key,
              settings.kling_access_key, settings.kling_secret_key, settings.secret_key]
    return [value.get_secret_value() for value in values if value is not None]


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """The two documented knobs that point discord.py at another Discord (the sandbox)."""
    import yarl

    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


async def run_bot(settings: Settings) -> None:
    assert settings.discord_token is not None
    if settings.discord_api_base != Settings.model_fields["discord_api_base"].default or \
            settings.discord_gateway_url != Settings.model_fields["discord_gateway_url"].default:
        point_discord_py_at(settings.discord_api_base, settings.discord_gateway_url)
    bot = VideoBot(settings)
    async with bot:
        await bot.start(settings.discord_token.get_secret_value())


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, secrets_of(settings))
    try:
        if settings.discord_token is None:
            from bot.sandbox.run import run_sandbox

            asyncio.run(run_sandbox(settings))
        else:
            asyncio.run(run_bot(settings))
    except KeyboardInterrupt:
        return 0
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: check the bot token in .env.", file=sys.stderr)
        return 2
    return 0
