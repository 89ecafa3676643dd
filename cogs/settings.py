"""/settings: a server's managers (Manage Server) limit how the bot is used in their server.

Guild-scoped only: which channels, who may use Sora, and per-member caps. Credits and prices are
global and belong to the bot's operators, so nothing here mints or prices anything. Every change is
written with an append-only audit row (who, when, old -> new).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import ui
from bot.service import GuildSettings, SettingsChange
from cogs._shared import is_manager, refuse

if TYPE_CHECKING:
    from bot.client import VideoBot

Choice = app_commands.Choice

CLEARABLE = {
    "channels": ("allowed_channels", "every channel allowed again"),
    "sora_roles": ("sora_roles", "Sora open to every member again"),
    "daily_cap": ("member_daily_cap", "no per-member daily cap"),
    "concurrency": ("member_concurrency", "per-member concurrency back to the bot's limit"),
}
LABELS = {
    "allowed_channels": "Channels",
    "sora_roles": "Sora roles",
    "member_daily_cap": "Daily cap per member",
    "member_concurrency": "Concurrent videos per member",
}


class SettingsError(Exception):
    """A change a manager asked for that makes no sense; shown to them, nothing is written."""


class ServerSettings(commands.Cog):
    """Per-guild controls for server managers."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Server managers: where and how members may use the bot here.")
    @app_commands.describe(
        allow_channel="Allow the video commands in this channel (once any is listed, only listed channels work)",
        disallow_channel="Take a channel off the allowed list",
        sora_role_add="Let members with this role use Sora (once any is listed, only those roles can)",
        sora_role_remove="Take a role off the Sora list",
        daily_cap="Credits each member may spend per UTC day in this server (0 = none)",
        concurrency="Videos each member may render at once in this server (at most the bot's own limit)",
        clear="Reset one setting to its default",
    )
    @app_commands.choices(clear=[
        Choice(name="channels (all allowed)", value="channels"),
        Choice(name="sora roles (everyone)", value="sora_roles"),
        Choice(name="daily cap (none)", value="daily_cap"),
        Choice(name="concurrency (bot's limit)", value="concurrency"),
    ])
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    async def settings(
        self,
        interaction: discord.Interaction,
        allow_channel: app_commands.AppCommandChannel | None = None,
        disallow_channel: app_commands.AppCommandChannel | None = None,
        sora_role_add: discord.Role | None = None,
        sora_role_remove: discord.Role | None = None,
        daily_cap: app_commands.Range[int, 0, 1_000_000] | None = None,
        concurrency: app_commands.Range[int, 1, 100] | None = None,
        clear: str | None = None,
    ) -> None:
        """Without options: show the settings. With options: change them (audited), then show them."""
        if not is_manager(interaction) or interaction.guild_id is None:
            await refuse(interaction, "Only this server's managers (Manage Server) can use `/settings`, and only "
                                      "in a server where the bot is installed.")
            return
        guild_id = interaction.guild_id
        limit = self.bot.settings.max_concurrent_jobs

        def change(current: GuildSettings) -> GuildSettings:
            new = current
            if clear is not None:
                if clear not in CLEARABLE:
                    raise SettingsError(f"`clear` must be one of {', '.join(CLEARABLE)}.")
                field = CLEARABLE[clear][0]
                new = replace(new, **{field: frozenset() if field in ("allowed_channels", "sora_roles") else None})
            if allow_channel is not None:
                if allow_channel.guild_id != guild_id:
                    raise SettingsError("That channel is not in this server.")
                new = replace(new, allowed_channels=new.allowed_channels | {allow_channel.id})
            if disallow_channel is not None:
                new = replace(new, allowed_channels=new.allowed_channels - {disallow_channel.id})
            if sora_role_add is not None:
                new = replace(new, sora_roles=new.sora_roles | {sora_role_add.id})
            if sora_role_remove is not None:
                new = replace(new, sora_roles=new.sora_roles - {sora_role_remove.id})
            if daily_cap is not None:
                new = replace(new, member_daily_cap=daily_cap)
            if concurrency is not None:
                if concurrency > limit:
                    raise SettingsError(f"Concurrency can be at most {limit}, the bot's own per-user limit.")
                new = replace(new, member_concurrency=concurrency)
            return new

        asked = [allow_channel, disallow_channel, sora_role_add, sora_role_remove, daily_cap, concurrency, clear]
        touched = {"channels": (allow_channel, disallow_channel), "sora_roles": (sora_role_add, sora_role_remove),
                   "daily_cap": (daily_cap,), "concurrency": (concurrency,)}
        if clear is not None and any(option is not None for option in touched.get(clear, ())):
            await refuse(interaction, f"You asked to clear {clear} and to change it at once; do one or the other.")
            return
        if any(option is not None for option in asked):
            try:
                current, changes = await self.bot.service.update_guild_rules(guild_id, change,
                                                                             actor_id=interaction.user.id)
            except SettingsError as error:
                await refuse(interaction, str(error))
                return
            note = "Saved." if changes else "Nothing changed: that is already the setting."
        else:
            current, note = await self.bot.service.guild_rules(guild_id), None
        history = await self.bot.service.guild_history(guild_id, limit=5)
        await interaction.response.send_message(embed=self.embed(current, history, note), ephemeral=True,
                                                allowed_mentions=ui.NO_MENTIONS)

    def embed(self, rules: GuildSettings, history: list[SettingsChange], note: str | None) -> discord.Embed:
        """The current settings in plain words, and the latest audited changes."""
        limit = self.bot.settings.max_concurrent_jobs
        embed = discord.Embed(title="Server settings", colour=ui.KLING_COLOUR, description=note)
        channels = ", ".join(f"<#{c}>" for c in sorted(rules.allowed_channels)) or "every channel"
        roles = ", ".join(f"<@&{r}>" for r in sorted(rules.sora_roles)) or "every member"
        cap = f"{rules.member_daily_cap} credits (UTC day)" if rules.member_daily_cap is not None else "none"
        running = (f"{rules.member_concurrency}" if rules.member_concurrency is not None
                   else f"bot's limit ({limit})")
        embed.add_field(name=LABELS["allowed_channels"], value=channels, inline=False)
        embed.add_field(name=LABELS["sora_roles"], value=roles, inline=False)
        embed.add_field(name=LABELS["member_daily_cap"], value=cap, inline=True)
        embed.add_field(name=LABELS["member_concurrency"], value=running, inline=True)
        if history:
            lines = []
            for entry in history:
                when = datetime.fromtimestamp(entry.created_at, tz=UTC).strftime("%m-%d %H:%M")
                lines.append(f"`{when}` <@{entry.actor_id}> {LABELS.get(entry.setting, entry.setting)}: "
                             f"{_shown(entry.setting, entry.old_value)} → {_shown(entry.setting, entry.new_value)}")
            embed.add_field(name="Recent changes", value="\n".join(lines), inline=False)
        return embed


def _shown(setting: str, value: str | None) -> str:
    """An audited value in plain words (id lists as mentions)."""
    if value is None:
        return "none"
    if setting in ("allowed_channels", "sora_roles"):
        ids = json.loads(value)
        mark = "#" if setting == "allowed_channels" else "@&"
        return ", ".join(f"<{mark}{i}>" for i in ids) or "all"
    return value


async def setup(bot: VideoBot) -> None:
    """Load the Settings cog."""
    await bot.add_cog(ServerSettings(bot))
