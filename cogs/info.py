"""/ping, /help and /models: what the bot is and which model to pick."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import ui
from bot.pricing import current_prices, price_lines

if TYPE_CHECKING:
    from bot.client import VideoBot

MODELS_TABLE = (
    "```\n"
    "                Kling 2.0            Sora 2\n"
    "duration        5 or 10 s            4, 8 or 12 s\n"
    "resolution      720p                 720p, or 1024p (high)\n"
    "shapes          16:9, 9:16, 1:1      landscape, portrait\n"
    "audio           none                 synchronized\n"
    "CFG / negative  yes / yes            no / no\n"
    "first frame     yes                  yes\n"
    "typical wait    2-6 min              5-15 min\n"
    "cost            lower                higher (high: more)\n"
    "own API key     no                   optional (OpenAI)\n"
    "```"
)


class Info(commands.Cog):
    """Help and model guidance."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="ping", description="Check that the bot is alive.")
    async def ping(self, interaction: discord.Interaction) -> None:
        """Answer with the gateway latency."""
        started = time.perf_counter()
        latency = self.bot.latency * 1000 if self.bot.latency == self.bot.latency else 0.0
        await interaction.response.send_message(
            f"Pong! gateway {latency:.0f} ms · handler {(time.perf_counter() - started) * 1000:.1f} ms",
            ephemeral=True,
        )

    @app_commands.command(name="models", description="Kling vs Sora: what each does best and what it costs.")
    async def models(self, interaction: discord.Interaction) -> None:
        """The comparison table and when to use which."""
        table = await current_prices(self.bot.settings, self.bot.store)
        embed = discord.Embed(title="Kling 2.0 vs Sora 2", colour=ui.SORA_COLOUR, description=MODELS_TABLE)
        embed.add_field(
            name="Kling: iterate",
            value="Social posts, square formats, quick prototypes, background loops, budget work. "
            "Keep prompts concise: one or two sentences about the subject and its movement.",
            inline=False,
        )
        embed.add_field(
            name="Sora: finish",
            value="Marketing, 12 s explainers, anything that needs sound, high-end shorts. "
            "Write detailed prompts: lighting, camera movement, mood.",
            inline=False,
        )
        embed.add_field(
            name="Use both",
            value="Explore with `/kling`, press 🎬 on the result you like to render it with Sora, or run "
            "`/compare` to see both side by side. Be specific about movement, lighting and camera; one subject "
            "per clip; make 2-3 variations of important shots.",
            inline=False,
        )
        embed.add_field(name="Prices", value="\n".join(price_lines(table)), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="help", description="How to use the video bot.")
    async def help(self, interaction: discord.Interaction) -> None:
        """List the commands."""
        embed = discord.Embed(title="AI video bot", colour=ui.KLING_COLOUR, description=(
            "`/kling prompt` quick, cheap 720p clips (5/10 s)\n"
            "`/sora prompt` polished clips with audio (4/8/12 s)\n"
            "`/compare prompt` both models side by side; vote on the better one (`blind` hides labels)\n"
            "`/compare-stats` community win rates\n"
            "`/credits` balance, daily grant, prices, recent activity\n"
            "`/jobs` your running and recent jobs · `/job show id` · `/job cancel id`\n"
            "`/openai-key set|status|remove` render Sora on your own OpenAI account\n"
            "`/models` which model to use when\n\n"
            "Results arrive in this channel (or your DMs) with buttons: ↻ rerun, 🎲 variation, "
            "🎬 render a Kling result with Sora. Failed or canceled jobs are refunded automatically."
        ))
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: VideoBot) -> None:
    """Load the Info cog."""
    await bot.add_cog(Info(bot))
