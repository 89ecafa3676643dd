"""/ping, /help and /models: what the bot is and which model to pick."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import catalogue, ui
from bot.pricing import price_lines
from bot.requests import PriceTable

if TYPE_CHECKING:
    from bot.client import VideoBot

def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}" if seconds >= 60 else f"{seconds / 60:.1f}"


def models_table(table: PriceTable) -> str:
    """The comparison table of every enabled model, built from the catalogue (a code block)."""
    books = catalogue.current()
    rows = [("model", "length", "shapes", "size", "audio", "cfg/neg", "frame", "wait", "credits/s")]
    for spec in books.enabled():
        default = spec is books.default(spec.family)
        sizes = {min(spec.size(shape, tier)) for shape in spec.shapes for tier in spec.tiers}
        waits = [spec.wait(seconds) for seconds in spec.durations]
        prices = "/".join(str(table.per_second(spec, tier)) for tier in spec.tiers)
        rows.append((
            spec.label + (" *" if default else ""),
            ",".join(str(seconds) for seconds in spec.durations) + " s",
            " ".join("land" if s == "landscape" else "port" if s == "portrait" else s for s in spec.shapes),
            "/".join(f"{size}p" for size in sorted(sizes)),
            "yes" if spec.audio else "no",
            f"{'yes' if spec.cfg_scale else 'no'}/{'yes' if spec.negative_prompt else 'no'}",
            "yes" if spec.first_frame else "no",
            f"{_minutes(min(w[0] for w in waits))}-{_minutes(max(w[1] for w in waits))} min",
            prices,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "```\n" + "\n".join(lines) + "\n```\n* the default of its command; pick another with `model:`."


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

    @app_commands.command(name="models", description="Every model: what it does best, its options and what it costs.")
    async def models(self, interaction: discord.Interaction) -> None:
        """The comparison table and when to use which."""
        table = await self.bot.service.prices()
        books = catalogue.current()
        embed = discord.Embed(title="Which model? " + " vs ".join(books.family(f).label for f in catalogue.FAMILIES),
                              colour=ui.SORA_COLOUR, description=models_table(table))
        for family in catalogue.FAMILIES:
            info = books.family(family)
            tips = [f"**{spec.label}**: {spec.tips}" for spec in books.enabled(family) if spec.tips]
            value = " ".join(part for part in (info.best_for, info.tips) if part)
            value = "\n".join([value, *tips]) if value else "\n".join(tips)
            embed.add_field(name=f"{info.label} (`/{family}`)", value=value[:1024] or "-", inline=False)
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
            "`/kling prompt [model]` quick, cheap clips\n"
            "`/sora prompt [model]` polished clips with audio\n"
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
