"""A loopback Discord for tests and the sandbox: REST + gateway enough for the unmodified discord.py client.

Modules, each importing only those listed before it: `constants` (Discord's numbers, from discord.py's
enums), `rules` (pure validation), `events` (publish/subscribe/log), `world` (typed state and payloads),
`gateway`, `interactions`, `rest`, `persist` (the world on disk) and `server` (the aiohttp app tying them
together). The names below are loaded on first use, so importing one module loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.sandbox.discord.rules import DiscordError
    from bot.sandbox.discord.server import LoopbackDiscord
    from bot.sandbox.discord.world import Interaction

__all__ = ["DiscordError", "Interaction", "LoopbackDiscord"]
_HOMES = {"DiscordError": "rules", "Interaction": "world", "LoopbackDiscord": "server"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
