"""The last line of defence for slash commands, buttons and modals.

Without it an unexpected exception leaves the user with Discord's "The application did not respond"
and the operator with a traceback nobody can connect to a complaint. Here every unexpected error
gets a short reference id that appears both in the user's ephemeral answer and in the log line with
the traceback (the model is python-discord's error handler cog). Expected failures (checks, bad
option values, stale commands) get a plain explanation and no traceback.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot import logcontext

log = logging.getLogger(__name__)


def new_reference() -> str:
    """Eight hex characters: short enough to read out, unique enough to grep for."""
    return secrets.token_hex(4)


def bind_interaction(interaction: discord.Interaction) -> None:
    """Put the interaction's ids in the log context of the task handling it."""
    logcontext.bind(interaction_id=interaction.id, user_id=interaction.user.id, guild_id=interaction.guild_id)


async def answer(interaction: discord.Interaction, text: str) -> None:
    """Ephemeral answer whether or not the interaction was already acknowledged; never raises."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as error:  # expired token (15 min), or Discord is down
        log.warning("could not tell the user about an error (HTTP %s)", error.status)


async def report(interaction: discord.Interaction, error: BaseException, where: str) -> str:
    """Log an unexpected error with its traceback and a reference id, tell the user; returns the id."""
    reference = new_reference()
    log.error("unexpected error in %s (ref %s)", where, reference, exc_info=error, extra={"ref": reference})
    await answer(interaction, f"⚠️ Something went wrong on our side (reference `{reference}`). Please try again; "
                              "if it keeps happening, give this reference to the bot's operators.")
    return reference


def _command_name(interaction: discord.Interaction) -> str:
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "a command"


def expected_message(error: app_commands.AppCommandError) -> str | None:
    """What to tell the user for failures that are not bugs; None for the unexpected ones."""
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.MissingPermissions | app_commands.MissingRole | app_commands.MissingAnyRole):
        return "You are not allowed to use this command here."
    if isinstance(error, app_commands.BotMissingPermissions):
        return "I am missing permissions in this channel: " + ", ".join(error.missing_permissions) + "."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"That value is not valid: {error.value!r}."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "This command has changed or is no longer available; please try again in a minute."
    return None


class VideoTree(app_commands.CommandTree):
    """The bot's command tree: binds log context before each command and answers every error."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        bind_interaction(interaction)
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        message = expected_message(error)
        if message is not None:
            log.info("%s refused: %s", _command_name(interaction), type(error).__name__)
            await answer(interaction, f"⚠️ {message}")
            return
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await report(interaction, original, _command_name(interaction))
