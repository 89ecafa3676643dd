"""Discord's numbers, named: discord.py's own enums and flags where it has them, so the loopback server and
the client it serves can never disagree about what a number means."""

from __future__ import annotations

from enum import IntEnum

import discord
from discord import enums
from discord.gateway import DiscordWebSocket

__all__ = [
    "ACK_WINDOW",
    "ALL_PERMISSIONS",
    "BOT_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "DISCORD_EPOCH_MS",
    "GATEWAY_BACKLOG",
    "HEARTBEAT_INTERVAL_MS",
    "JSON",
    "NONCE_MAX_LENGTH",
    "NONCE_WINDOW",
    "TIER_LIMITS",
    "TOKEN_LIFETIME",
    "USER_INSTALL_APP_PERMISSIONS",
    "V2_MAX_COMPONENTS",
    "Callback",
    "Channel",
    "Component",
    "Flag",
    "IntegrationType",
    "InteractionContext",
    "Kind",
    "MiB",
    "Op",
    "Option",
    "Perm",
    "Style",
]

JSON = "application/json"
MiB = 1024 * 1024
TIER_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}  # upload limit per boost tier
DISCORD_EPOCH_MS = 1_420_070_400_000
ACK_WINDOW = 3.0  # seconds to answer an interaction
TOKEN_LIFETIME = 15 * 60.0  # an interaction token's life
NONCE_WINDOW = 300.0  # enforce_nonce de-duplicates within this
NONCE_MAX_LENGTH = 25
HEARTBEAT_INTERVAL_MS = 41250
# Discord's ACK crosses a network; answering a heartbeat in the same loop iteration beat discord.py's
# keep-alive thread to recording the send time, so it measured a whole interval ("Can't keep up,
# websocket is 41.3s behind") although nothing was late. A real round trip's worth of delay avoids that.
HEARTBEAT_ACK_DELAY = 0.05
GATEWAY_BACKLOG = 1000  # dispatches kept per session for RESUME
V2_MAX_COMPONENTS = 40


class Op:
    """Gateway opcodes, as discord.py names them."""

    DISPATCH = DiscordWebSocket.DISPATCH
    HEARTBEAT = DiscordWebSocket.HEARTBEAT
    IDENTIFY = DiscordWebSocket.IDENTIFY
    RESUME = DiscordWebSocket.RESUME
    REQUEST_MEMBERS = DiscordWebSocket.REQUEST_MEMBERS
    INVALID_SESSION = DiscordWebSocket.INVALIDATE_SESSION
    HELLO = DiscordWebSocket.HELLO
    HEARTBEAT_ACK = DiscordWebSocket.HEARTBEAT_ACK


class Channel:
    """Channel types."""

    TEXT: int = enums.ChannelType.text.value
    DM: int = enums.ChannelType.private.value
    GROUP_DM: int = enums.ChannelType.group.value


class Kind:
    """Interaction types, and the message type of an interaction's answer."""

    COMMAND: int = enums.InteractionType.application_command.value
    COMPONENT: int = enums.InteractionType.component.value
    MODAL_SUBMIT: int = enums.InteractionType.modal_submit.value
    DEFAULT_MESSAGE: int = enums.MessageType.default.value
    COMMAND_MESSAGE: int = enums.MessageType.chat_input_command.value


class Callback:
    """Interaction callback (response) types."""

    MESSAGE: int = enums.InteractionResponseType.channel_message.value
    DEFERRED_MESSAGE: int = enums.InteractionResponseType.deferred_channel_message.value
    DEFERRED_UPDATE: int = enums.InteractionResponseType.deferred_message_update.value
    UPDATE: int = enums.InteractionResponseType.message_update.value
    MODAL: int = enums.InteractionResponseType.modal.value
    ALLOWED = frozenset({MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, MODAL})


class Option:
    """Application command option types."""

    SUBCOMMAND: int = enums.AppCommandOptionType.subcommand.value
    SUBCOMMAND_GROUP: int = enums.AppCommandOptionType.subcommand_group.value
    STRING: int = enums.AppCommandOptionType.string.value
    INTEGER: int = enums.AppCommandOptionType.integer.value
    BOOLEAN: int = enums.AppCommandOptionType.boolean.value
    USER: int = enums.AppCommandOptionType.user.value
    CHANNEL: int = enums.AppCommandOptionType.channel.value
    ROLE: int = enums.AppCommandOptionType.role.value
    MENTIONABLE: int = enums.AppCommandOptionType.mentionable.value
    NUMBER: int = enums.AppCommandOptionType.number.value
    ATTACHMENT: int = enums.AppCommandOptionType.attachment.value
    SUBCOMMANDS = (SUBCOMMAND, SUBCOMMAND_GROUP)
    SNOWFLAKES = (USER, CHANNEL, ROLE, MENTIONABLE)  # resolved into `data.resolved`
    STRINGIFIED = (USER, CHANNEL, ROLE, MENTIONABLE, ATTACHMENT)


class Component:
    """Component types."""

    ACTION_ROW: int = enums.ComponentType.action_row.value
    BUTTON: int = enums.ComponentType.button.value
    STRING_SELECT: int = enums.ComponentType.select.value
    TEXT_INPUT: int = enums.ComponentType.text_input.value
    USER_SELECT: int = enums.ComponentType.user_select.value
    ROLE_SELECT: int = enums.ComponentType.role_select.value
    MENTIONABLE_SELECT: int = enums.ComponentType.mentionable_select.value
    CHANNEL_SELECT: int = enums.ComponentType.channel_select.value
    LABEL: int = enums.ComponentType.label.value
    FILE_UPLOAD: int = enums.ComponentType.file_upload.value
    RADIO_GROUP: int = enums.ComponentType.radio_group.value
    CHECKBOX_GROUP: int = enums.ComponentType.checkbox_group.value
    CHECKBOX: int = enums.ComponentType.checkbox.value
    SELECTS = (STRING_SELECT, USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT)
    NEEDS_CUSTOM_ID = (*SELECTS, TEXT_INPUT)  # buttons too, unless link or premium


class Style:
    """Button styles that carry no custom_id."""

    LINK: int = enums.ButtonStyle.link.value
    PREMIUM: int = enums.ButtonStyle.premium.value


class Flag:
    """Message flags."""

    SUPPRESS_EMBEDS = discord.MessageFlags.suppress_embeds.flag
    EPHEMERAL = discord.MessageFlags.ephemeral.flag
    LOADING = discord.MessageFlags.loading.flag
    COMPONENTS_V2 = discord.MessageFlags.components_v2.flag


class Perm:
    """Single permission bits the server checks."""

    SEND_MESSAGES = discord.Permissions(send_messages=True).value
    EMBED_LINKS = discord.Permissions(embed_links=True).value
    ATTACH_FILES = discord.Permissions(attach_files=True).value


class InteractionContext(IntEnum):
    """Where an interaction happened (discord.py models this as flags only)."""

    GUILD = 0
    BOT_DM = 1
    PRIVATE_CHANNEL = 2


class IntegrationType(IntEnum):
    """Who installed the app (the keys of `authorizing_integration_owners`)."""

    GUILD_INSTALL = 0
    USER_INSTALL = 1


ALL_PERMISSIONS = (1 << 50) - 1  # what an administrator holds
DEFAULT_MEMBER_PERMISSIONS = discord.Permissions(
    add_reactions=True, view_channel=True, send_messages=True, change_nickname=True, embed_links=True,
    attach_files=True, use_application_commands=True, send_messages_in_threads=True).value
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, embed_links=True, attach_files=True, read_message_history=True,
    use_application_commands=True, send_messages_in_threads=True).value
USER_INSTALL_APP_PERMISSIONS = Perm.SEND_MESSAGES | Perm.EMBED_LINKS | Perm.ATTACH_FILES
