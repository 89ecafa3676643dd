"""/credits for everyone; /credits-grant and /credits-set-price for the bot's operators only (all audited).

Credits and prices are global, so no guild role can grant authority over them: a stranger who adds
the bot to a server of their own manages that server, not the operator's money.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import catalogue, ui
from bot.pricing import LEGACY_KEYS, legacy_key, price_lines
from cogs._shared import refuse
from cogs.store import buy_view

if TYPE_CHECKING:
    from bot.client import VideoBot

OPERATORS_ONLY = ("Only the bot's operators can {what}: credits and prices are the same in every server. "
                  "Server managers can limit spending in their server with `/settings`.")
KIND_WORDS = {"grant": "welcome", "daily": "daily grant", "reserve": "reserved", "capture": "spent",
              "refund": "refunded", "adjust": "admin"}


class Credits(commands.Cog):
    """Balances and the price table."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        # The price keys are the catalogue's (model id, or id:high): set when the cog loads.
        params = self.credits_set_price._params
        choices = [app_commands.Choice(name=_key_name(key), value=key) for key in catalogue.current().price_keys()]
        params["option"] = dataclasses.replace(params["option"], choices=choices[: catalogue.MAX_CHOICES])

    @app_commands.command(name="credits", description="Your balance, today's grant, prices and recent activity.")
    async def credits(self, interaction: discord.Interaction) -> None:
        """Show the caller's credits."""
        user_id = interaction.user.id
        view = await self.bot.service.credits_view(user_id, history=8)
        balance, today, table = view.balance, view.granted_today, view.prices
        description = (f"**{balance}** credits · today's grant: {today} (daily: "
                       f"{self.bot.settings.daily_grant}, at 00:00 UTC)")
        grants_from = view.grants_from
        if grants_from > time.time():
            description += (f"\nFree credits start once your Discord account is "
                            f"{self.bot.settings.new_account_min_days:g} days old: <t:{int(grants_from)}:f>.")
        embed = discord.Embed(title="Your credits", colour=ui.KLING_COLOUR, description=description)
        embed.add_field(name="Prices", value="\n".join(price_lines(table)), inline=False)
        entries = view.history
        if entries:
            lines = []
            for entry in entries:
                when = datetime.fromtimestamp(entry.created_at, tz=UTC).strftime("%m-%d %H:%M")
                what = KIND_WORDS[entry.kind.value] + (f" job #{entry.job_id}" if entry.job_id else "")
                if entry.kind.value == "adjust" and entry.actor_id is None:  # bought in Discord, or refunded
                    what = "bought" if entry.amount > 0 else "purchase refunded"
                amount = f"{entry.amount:+d}" if entry.amount else "±0"
                lines.append(f"`{when}` {amount} {what}")
            embed.add_field(name="Recent", value="\n".join(lines), inline=False)
        buy = buy_view(self.bot.settings)  # premium buttons (sku_id) for the CREDIT_PACKS; none when unset
        await interaction.response.send_message(embed=embed, ephemeral=True, **({"view": buy} if buy else {}))

    @app_commands.command(name="credits-grant", description="Bot operators: give (or take, if negative) credits.")
    @app_commands.describe(user="Who gets the credits", amount="Credits to add (negative to remove)",
                           reason="Shown in the ledger")
    @app_commands.default_permissions(manage_guild=True)  # only hides it from members; operators use it in DMs too
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def credits_grant(self, interaction: discord.Interaction, user: discord.User,
                            amount: app_commands.Range[int, -100000, 100000],
                            reason: app_commands.Range[str, 1, 200] | None = None) -> None:
        """Adjust a user's balance, recorded with the admin's id."""
        if not self.bot.is_operator(interaction.user.id):
            await refuse(interaction, OPERATORS_ONLY.format(what="grant or remove credits"))
            return
        applied, balance = await self.bot.service.adjust_credits(
            user.id, amount, actor_id=interaction.user.id, key=f"adjust:{interaction.id}",
            reason=reason or f"granted by {interaction.user.id}",
        )
        word = "Granted" if amount >= 0 else "Removed"
        await interaction.response.send_message(
            f"{word} {abs(amount)} credits {'to' if amount >= 0 else 'from'} {user.mention}; balance now {balance}."
            if applied else "That grant was already applied.",
            ephemeral=True, allowed_mentions=ui.NO_MENTIONS,
        )

    @app_commands.command(name="credits-set-price", description="Bot operators: set credits per second of a model.")
    @app_commands.describe(option="Which model (and tier)", credits="Credits per second of video")
    @app_commands.choices(option=[app_commands.Choice(name="(set from the catalogue)", value="-")])
    @app_commands.default_permissions(manage_guild=True)  # only hides it from members; operators use it in DMs too
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def credits_set_price(self, interaction: discord.Interaction, option: str,
                                credits: app_commands.Range[int, 0, 10000]) -> None:
        """Change the price table at runtime (audited)."""
        if not self.bot.is_operator(interaction.user.id):
            await refuse(interaction, OPERATORS_ONLY.format(what="change prices"))
            return
        keys = catalogue.current().price_keys()
        if option in LEGACY_KEYS:  # a client with the old command: the price that key now means
            option = legacy_key(option) or option
        if option not in keys:
            await refuse(interaction, f"Price must be one of {', '.join(keys)}.")
            return
        table = await self.bot.service.set_price(option, credits, actor_id=interaction.user.id)
        await interaction.response.send_message("Prices now:\n" + "\n".join(price_lines(table)), ephemeral=True)


def _key_name(key: str) -> str:
    found = catalogue.current().spec_for_price_key(key)
    if found is None:
        return key
    spec, tier = found
    return spec.label if tier == "standard" else f"{spec.label} ({tier})"


async def setup(bot: VideoBot) -> None:
    """Load the Credits cog."""
    await bot.add_cog(Credits(bot))
