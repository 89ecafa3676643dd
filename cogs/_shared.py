"""Helpers every cog uses: turning an interaction into plain data and refusing politely."""

from __future__ import annotations

import discord

from bot.service import Invocation, VideoService
from storage import Job


def invocation(interaction: discord.Interaction) -> Invocation:
    """Capture what delivery needs later: where to post, and whether the bot may post there itself."""
    channel = interaction.channel
    is_dm = isinstance(channel, discord.DMChannel)
    perms = interaction.app_permissions
    can_post = is_dm or (
        interaction.guild_id is not None
        and interaction.is_guild_integration()
        and perms.send_messages
        and perms.attach_files
        and perms.embed_links
        and (perms.send_messages_in_threads or not isinstance(channel, discord.Thread))
    )
    return Invocation(
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        guild_id=interaction.guild_id,
        is_dm=is_dm,
        guild_installed=bool(can_post),
        interaction_id=interaction.id,
        application_id=interaction.application_id,
        token=interaction.token,
        expires_at=interaction.expires_at.timestamp(),
        upload_limit=upload_limit(interaction),
    )


def upload_limit(interaction: discord.Interaction) -> int:
    """The interaction's per-file limit (the payload's attachment_size_limit), 10 MiB if absent."""
    try:
        return interaction.filesize_limit
    except (KeyError, AttributeError):
        return 10 * 1024 * 1024


async def refuse(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral error; nothing was charged when this is called."""
    embed = discord.Embed(description=f"⚠️ {message}", colour=discord.Colour.orange())
    if interaction.response.is_done():
        await interaction.followup.send(embed=embed, ephemeral=True)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def cancel_and_reply(interaction: discord.Interaction, service: VideoService, job: Job) -> None:
    """Cancel an active job (refunded) and say so; the caller has checked it is the user's own."""
    if not job.state.active:
        await refuse(interaction, f"Job #{job.id} is already {job.state.value}; nothing to cancel.")
        return
    job, stopped = await service.cancel(job)
    refund = f" {job.price} credits refunded." if job.price else ""
    where = "" if stopped or not job.provider_job_id else " (the provider could not stop it, but you pay nothing)"
    await interaction.response.send_message(f"Job #{job.id} canceled{where}.{refund}", ephemeral=True)


def is_admin(interaction: discord.Interaction, admin_role_id: int | None, admin_guilds: set[int] | None = None) -> bool:
    """Manage Server in this guild, or the configured admin role (and only in ADMIN_GUILD_IDS when set)."""
    member = interaction.user
    if not isinstance(member, discord.Member) or not interaction.is_guild_integration():
        return False  # a user install in someone's server grants no authority over the bot
    if admin_guilds is not None and interaction.guild_id not in admin_guilds:
        return False
    if member.guild_permissions.manage_guild:
        return True
    return admin_role_id is not None and any(role.id == admin_role_id for role in member.roles)
