"""Which Discord the bot talks to: Discord itself, or another one speaking its protocol (the loopback
Discord of the sandbox and the tests)."""

from __future__ import annotations

import discord
import yarl


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Point discord.py at another Discord: the two class attributes it reads."""
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
