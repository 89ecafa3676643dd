"""Helpers every cog uses: turning an interaction into plain data and refusing politely."""

from __future__ import annotations

import discord

from bot import ui
from bot.service import IllegalTransition, Invocation, Job, VideoService


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
        rules_guild_id=rules_guild(interaction),
    )


def upload_limit(interaction: discord.Interaction) -> int:
    """The interaction's per-file limit (the payload's attachment_size_limit), 10 MiB if absent."""
    try:
        return interaction.filesize_limit
    except (KeyError, AttributeError):
        return 10 * 1024 * 1024


async def refuse(interaction: discord.Interaction, message: str, *, view: discord.ui.View | None = None) -> None:
    """An ephemeral error; nothing was charged when this is called. `view`: e.g. buy buttons."""
    embed = discord.Embed(description=f"⚠️ {message}", colour=discord.Colour.orange())
    extra = {"view": view} if view is not None else {}
    if interaction.response.is_done():
        await interaction.followup.send(embed=embed, ephemeral=True, **extra)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=True, **extra)


async def ask_cancel(interaction: discord.Interaction, service: VideoService, job: Job) -> None:
    """The first step of a cancel: say what it costs (ephemeral) and offer a confirm button."""
    if not job.state.active:
        await refuse(interaction, f"Job #{job.id} is already {job.state.value}; nothing to cancel.")
        return
    await interaction.response.send_message(service.cancel_terms(job).words(), view=ui.confirm_cancel_view(job),
                                            ephemeral=True)


async def cancel_and_reply(interaction: discord.Interaction, service: VideoService, job: Job) -> None:
    """The confirmed cancel; the caller has checked it is the user's own."""
    if not job.state.active:
        await refuse(interaction, f"Job #{job.id} is already {job.state.value}; nothing to cancel.")
        return
    try:
        outcome = await service.cancel(job)
    except IllegalTransition:
        await refuse(interaction, f"Job #{job.id} finished meanwhile; nothing was canceled.")
        return
    words = f"Job #{job.id} canceled."
    if outcome.refunded:
        words += f" {outcome.refunded} credits refunded."
    if outcome.charged:
        words += f" {outcome.charged} credits charged: the provider could not stop the render."
    await interaction.response.send_message(words, ephemeral=True)


def is_manager(interaction: discord.Interaction) -> bool:
    """Manage Server in this guild, where the bot is installed (a user install grants no say over the guild)."""
    member, perms = interaction.user, interaction.permissions
    return (isinstance(member, discord.Member) and interaction.guild_id is not None
            and interaction.is_guild_integration() and (perms.manage_guild or perms.administrator))


def rules_guild(interaction: discord.Interaction) -> int | None:
    """The guild whose /settings apply here: only where the bot is installed (not DMs, not user installs)."""
    if interaction.guild_id is None or not interaction.is_guild_integration():
        return None
    return interaction.guild_id


async def guild_refusal(interaction: discord.Interaction, service: VideoService, *, sora: bool) -> str | None:
    """Why this guild's settings forbid starting a job here (channel, Sora role), or None when allowed.

    The caps that need counting (daily spend, concurrency) are checked when credits are reserved.
    """
    guild_id = rules_guild(interaction)
    if guild_id is None:
        return None
    rules = await service.guild_rules(guild_id)
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    if not rules.channel_allowed(interaction.channel_id, parent):
        where = ", ".join(f"<#{c}>" for c in sorted(rules.allowed_channels))
        return f"This server's managers allow the video commands only in {where}."
    member = interaction.user
    role_ids = {role.id for role in member.roles} if isinstance(member, discord.Member) else set()
    if sora and not rules.may_use_sora(role_ids):
        roles = ", ".join(f"<@&{r}>" for r in sorted(rules.sora_roles))
        return f"In this server Sora is for members with one of these roles: {roles}. `/kling` is open to you."
    return None
