"""/openai-key set|status|remove: a user's own OpenAI key, stored encrypted, never shown."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from pydantic import SecretStr

from bot import errors
from bot.providers.base import ProviderError
from bot.requests import ModelName
from cogs._shared import refuse

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)


class KeyModal(discord.ui.Modal, title="Your OpenAI API key"):
    """A modal keeps the key out of the channel and out of command history."""

    key: discord.ui.TextInput[KeyModal] = discord.ui.TextInput(
        label="API key", placeholder="sk-...", min_length=20, max_length=200, style=discord.TextStyle.short
    )

    def __init__(self, cog: Keys) -> None:
        super().__init__(timeout=600)
        self.cog = cog

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.cog.store_key(interaction, self.key.value.strip())

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        reference = errors.new_reference()
        # The type only, no traceback: a message or frame could hold the key itself.
        log.warning("key modal failed: %s (ref %s)", type(error).__name__, reference, extra={"ref": reference})
        await refuse(interaction, f"Your key could not be stored; please try again (reference `{reference}`).")


class Keys(commands.Cog):
    """Users' own OpenAI keys for Sora."""

    group = app_commands.Group(name="openai-key", description="Use your own OpenAI key for /sora")

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @group.command(name="set", description="Store your OpenAI key (encrypted) to render Sora on your account.")
    async def set_key(self, interaction: discord.Interaction) -> None:
        """Open the modal."""
        await interaction.response.send_modal(KeyModal(self))

    async def store_key(self, interaction: discord.Interaction, key: str) -> None:
        if not key.startswith("sk-") or any(ch.isspace() for ch in key):
            await refuse(interaction, "That does not look like an OpenAI API key (they start with `sk-`).")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        provider = self.bot.providers.for_model(ModelName.SORA)
        try:
            valid = await provider.verify_key(SecretStr(key))
        except ProviderError:
            await refuse(interaction, "OpenAI could not be reached to check the key; please try again later.")
            return
        if not valid:
            await refuse(interaction, "OpenAI rejected that key; nothing was stored.")
            return
        await self.bot.service.store_own_key(interaction.user.id, "openai", key)
        await interaction.followup.send(
            "Key stored (encrypted). Use `/sora use_own_key:true`; those renders cost no credits.", ephemeral=True
        )

    @group.command(name="status", description="Whether you have a key stored (the key is never shown).")
    async def status(self, interaction: discord.Interaction) -> None:
        stored_at = await self.bot.service.own_key_since(interaction.user.id, "openai")
        if stored_at is None:
            text = "No key stored. Add one with `/openai-key set`."
        else:
            since = datetime.fromtimestamp(stored_at, tz=UTC).strftime("%Y-%m-%d")
            text = f"A key is stored (encrypted) since {since}. `/sora use_own_key:true` bills your OpenAI account."
        await interaction.response.send_message(text, ephemeral=True)

    @group.command(name="remove", description="Delete your stored OpenAI key.")
    async def remove(self, interaction: discord.Interaction) -> None:
        removed = await self.bot.service.remove_own_key(interaction.user.id, "openai")
        await interaction.response.send_message("Key deleted." if removed else "You had no key stored.",
                                                ephemeral=True)


async def setup(bot: VideoBot) -> None:
    """Load the Keys cog."""
    await bot.add_cog(Keys(bot))
