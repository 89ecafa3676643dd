"""Process start-up: the real bot with a token, otherwise the offline sandbox."""

from __future__ import annotations

import asyncio
import logging
import sys

import discord

from bot.client import ShardedVideoBot, VideoBot
from bot.config import Settings
from bot.crypto import SecretKeyError
from bot.discord_api import point_discord_py_at
from bot.logs import setup_logging

log = logging.getLogger(__name__)


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.discord_token, settings.replicate_api_token, settings.openai_api_key,
              settings.kling_access_key, settings.kling_secret_key, settings.secret_key]
    return [value.get_secret_value() for value in values if value is not None]


def make_bot(settings: Settings) -> VideoBot:
    if settings.shard_count:
        return ShardedVideoBot(settings, shard_count=settings.shard_count, shard_ids=settings.shard_id_list())
    return VideoBot(settings)


async def run_bot(settings: Settings) -> None:
    assert settings.discord_token is not None
    if settings.discord_api_base != Settings.model_fields["discord_api_base"].default or \
            settings.discord_gateway_url != Settings.model_fields["discord_gateway_url"].default:
        point_discord_py_at(settings.discord_api_base, settings.discord_gateway_url)
    bot = make_bot(settings)
    token = settings.discord_token.get_secret_value()
    async with bot:
        if settings.bot_role == "worker":
            # Workers talk to Discord over REST only (deliveries, edits, DMs): no gateway connection.
            await bot.login(token)
            log.info("worker %s running", bot.poller.owner)
            await asyncio.Event().wait()
        else:
            await bot.start(token)


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, secrets_of(settings), json_lines=settings.log_format == "json")
    try:
        if settings.discord_token is None:
            from bot.sandbox.run import run_sandbox

            asyncio.run(run_sandbox(settings))
        else:
            asyncio.run(run_bot(settings))
    except KeyboardInterrupt:
        return 0
    except SecretKeyError as error:  # one line, never the key itself
        print(f"Cannot start: {error}", file=sys.stderr)
        return 2
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: check the bot token in .env.", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the sandbox console's or the web server's port is taken
        if error.errno in (98, 48):
            ports = f"{settings.web_port} (WEB_PORT)" if settings.web_enabled else ""
            if settings.discord_token is None:
                ports = " or ".join(filter(None, [f"{settings.sandbox_port} (SANDBOX_PORT)", ports]))
            print(f"Port {ports} is in use: set it to a free port (WEB_PORT=0 picks one; WEB_ENABLED=false "
                  "turns the web server off).", file=sys.stderr)
            return 2
        raise
    return 0
