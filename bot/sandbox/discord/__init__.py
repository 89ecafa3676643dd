"""A loopback Discord for tests and the sandbox: REST + gateway enough for the unmodified discord.py client.

Modules, each importing only those listed before it: `constants` (Discord's numbers, from discord.py's
enums), `rules` (pure validation), `events` (publish/subscribe/log), `world` (typed state and payloads),
`gateway`, `interactions`, `rest`, and `server` (the aiohttp app tying them together).
"""

from bot.sandbox.discord.rules import DiscordError
from bot.sandbox.discord.server import LoopbackDiscord
from bot.sandbox.discord.world import Interaction

__all__ = ["DiscordError", "Interaction", "LoopbackDiscord"]
