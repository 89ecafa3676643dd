"""The loopback world's state: users, guilds, channels, messages, uploaded files, commands and interactions.

Typed records for what the server keeps about each thing; messages, users and commands stay in the JSON
shape Discord sends them, since that is what they are served as. Everything that changes a message goes
through here so that it is validated by `rules` and published to `events` the same way every time.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from bot.sandbox.discord.constants import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DISCORD_EPOCH_MS,
    TIER_LIMITS,
    Channel,
    Flag,
    Kind,
    MiB,
    Perm,
)
from bot.sandbox.discord.events import Event, Events, Predicate
from bot.sandbox.discord.rules import DiscordError, UploadedFile, is_empty, validate_message

Payload = dict[str, Any]


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> Payload:
    return {"id": str(user_id), "username": name, "global_name": name, "discriminator": "0", "avatar": None,
            "bot": bot, "public_flags": 0}


@dataclass
class RoleState:
    """A plain role (no permissions) and who holds it."""

    name: str
    members: set[int] = field(default_factory=set)


@dataclass
class GuildState:
    """A guild: who is in it, who administers it, whether the bot was added, its upload limit."""

    id: int
    name: str
    owner_id: int
    admin_role: int
    bot_role: int
    premium_tier: int = 0
    bot_member: bool = True
    upload_limit: int | None = None
    channels: list[int] = field(default_factory=list)
    members: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)
    roles: dict[int, RoleState] = field(default_factory=dict)  # extra roles, besides admin and the bot's


@dataclass
class ChannelState:
    """A guild text channel, a DM with one user, or a group DM the bot is not in."""

    id: int
    type: int
    name: str
    guild_id: int | None = None
    bot_can_send: bool = True
    bot_can_attach: bool = True
    recipient: int | None = None  # DMs
    recipients: list[int] = field(default_factory=list)  # group DMs
    owner_id: int | None = None  # group DMs


SKU_CONSUMABLE, SKU_SUBSCRIPTION = 3, 5  # Discord's SKU types (DURABLE = 2, SUBSCRIPTION_GROUP = 6)
ENTITLEMENT_PURCHASE, ENTITLEMENT_TEST_MODE_PURCHASE, ENTITLEMENT_APPLICATION_SUBSCRIPTION = 1, 4, 8


class StoredFile(NamedTuple):
    data: bytes
    content_type: str
    name: str


@dataclass
class Interaction:
    """One interaction we sent to the bot, and what the bot did with it."""

    id: int
    token: str
    type: int
    user_id: int
    channel_id: int
    guild_id: int | None
    created_at: float
    name: str | None = None
    context: str = "guild"
    upload_limit: int = 10 * MiB
    payload: Payload = field(default_factory=dict)
    response_type: int | None = None
    response: Payload | None = None
    original_message_id: int | None = None
    followups: list[int] = field(default_factory=list)
    modal: Payload | None = None
    error: str | None = None
    sent_at: float | None = None  # perf_counter when INTERACTION_CREATE went out (latency benchmarks)
    acked_at: float | None = None
    responded: asyncio.Event = field(default_factory=asyncio.Event)
    _followed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_response(self, within: float = 10.0) -> Payload:
        """The callback the bot made: `{"type": callback type, "data": its data}`."""
        async with asyncio.timeout(within):
            await self.responded.wait()
        return {"type": self.response_type, "data": self.response}

    async def wait_followups(self, count: int = 1, within: float = 10.0) -> list[int]:
        """Ids of the first `count` followup messages, once the bot has sent that many."""
        async with asyncio.timeout(within):
            while len(self.followups) < count:
                await self._followed.wait()
        return self.followups[:count]

    def add_followup(self, message_id: int) -> None:
        self.followups.append(message_id)
        event, self._followed = self._followed, asyncio.Event()
        event.set()


def new_token() -> str:
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)


class World:
    """Users, guilds, channels, messages and files, with Discord's payload shapes and message rules."""

    def __init__(self, *, clock: Callable[[], float], bot_name: str = "VideoBot") -> None:
        self.clock = clock
        self._counter = itertools.count()
        self.events = Events(clock)
        self.base_url = "http://127.0.0.1:0"  # set by the server once it listens (attachment URLs)
        self.saved_base_url = ""  # the address a restored world was saved under
        self.on_change: Callable[[], None] | None = None  # persistence: the world changed
        self.on_file: Callable[[int, StoredFile], None] | None = None  # persistence: a file was uploaded
        self.events.listen(lambda _event: self.changed())
        self.app_id = self.new_id()
        self.bot_user = user_payload(self.app_id, bot_name, bot=True)
        self.users: dict[int, Payload] = {self.app_id: self.bot_user}
        self.dms_closed: set[int] = set()
        self.guilds: dict[int, GuildState] = {}
        self.channels: dict[int, ChannelState] = {}
        self.messages: dict[int, list[Payload]] = {}
        self.files: dict[int, StoredFile] = {}
        self.commands: dict[int | None, list[Payload]] = {None: []}
        self.created_at: dict[str, float] = {}  # message id -> Discord clock time (nonce window)
        self.team_members: list[int] | None = None  # set: the application belongs to a team of these users
        self.skus: dict[int, Payload] = {}  # the application's SKUs (monetization), as GET /skus serves them
        self.entitlements: dict[int, Payload] = {}  # every entitlement ever granted, deleted ones included
        # A default world: one guild with #general, three people (one of them an admin).
        self.admin = self.add_user("admin")
        self.alice = self.add_user("alice")
        self.bob = self.add_user("bob")
        self.guild = self.add_guild("Sandbox Guild", owner=self.admin)
        self.general = self.add_channel(self.guild, "general")

    # -- world building ------------------------------------------------------------------------

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def new_id(self) -> int:
        """A snowflake carrying the current time, as discord.py derives created_at (and token expiry) from it."""
        millis = int(self.clock() * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (next(self._counter) % (1 << 22))

    def add_user(self, name: str, *, dms_closed: bool = False, age_days: float = 365.0) -> int:
        """A person whose account (the time in their id) is `age_days` old: bots judge new accounts by it."""
        millis = int((self.clock() - age_days * 86400) * 1000) - DISCORD_EPOCH_MS
        user_id = (millis << 22) | (next(self._counter) % (1 << 22))
        self.users[user_id] = user_payload(user_id, name)
        if dms_closed:
            self.dms_closed.add(user_id)
        self.changed()
        return user_id

    def add_guild(self, name: str, *, owner: int | None = None, bot_member: bool = True,
                  premium_tier: int = 0, upload_limit: int | None = None) -> int:
        guild_id = self.new_id()
        owner = owner or self.admin
        self.guilds[guild_id] = GuildState(
            id=guild_id, name=name, owner_id=owner, premium_tier=premium_tier, bot_member=bot_member,
            members=set(self.users) - {self.app_id}, admins={owner}, upload_limit=upload_limit,
            admin_role=self.new_id(), bot_role=self.new_id())
        self.changed()
        return guild_id

    def add_role(self, guild_id: int, name: str, members: set[int] | frozenset[int] = frozenset()) -> int:
        """A plain role (no permissions) held by `members`; add it before the bot connects so its cache has it."""
        role_id = self.new_id()
        self.guilds[guild_id].roles[role_id] = RoleState(name, set(members))
        self.changed()
        return role_id

    def add_channel(self, guild_id: int, name: str, *, bot_can_send: bool = True,
                    bot_can_attach: bool = True) -> int:
        channel_id = self.new_id()
        self.channels[channel_id] = ChannelState(id=channel_id, type=Channel.TEXT, guild_id=guild_id, name=name,
                                                 bot_can_send=bot_can_send, bot_can_attach=bot_can_attach)
        self.guilds[guild_id].channels.append(channel_id)
        self.messages[channel_id] = []
        self.changed()
        return channel_id

    def dm_channel(self, user_id: int) -> int:
        for channel in self.channels.values():
            if channel.type == Channel.DM and channel.recipient == user_id:
                return channel.id
        channel_id = self.new_id()
        self.channels[channel_id] = ChannelState(id=channel_id, type=Channel.DM, recipient=user_id,
                                                 name=f"dm-{self.users[user_id]['username']}")
        self.messages[channel_id] = []
        self.changed()
        return channel_id

    def add_group_dm(self, name: str, members: list[int]) -> int:
        """A group DM between users (the bot is not in it): only a user-installed app can be used there."""
        channel_id = self.new_id()
        self.channels[channel_id] = ChannelState(id=channel_id, type=Channel.GROUP_DM, recipients=list(members),
                                                 name=name, owner_id=members[0])
        self.messages[channel_id] = []
        self.changed()
        return channel_id

    def upload_limit(self, guild_id: int | None) -> int:
        if guild_id is None:
            return TIER_LIMITS[0]
        guild = self.guilds[guild_id]
        return guild.upload_limit or TIER_LIMITS[guild.premium_tier]

    def is_admin(self, guild_id: int, user_id: int) -> bool:
        return user_id in self.guilds[guild_id].admins

    # -- payloads ------------------------------------------------------------------------------

    def channel_payload(self, channel_id: int) -> Payload:
        channel = self.channels[channel_id]
        if channel.type == Channel.DM:
            assert channel.recipient is not None
            return {"id": str(channel_id), "type": channel.type, "recipients": [self.users[channel.recipient]],
                    "last_message_id": None}
        if channel.type == Channel.GROUP_DM:
            return {"id": str(channel_id), "type": channel.type, "name": channel.name, "icon": None,
                    "owner_id": str(channel.owner_id), "last_message_id": None,
                    "recipients": [self.users[u] for u in channel.recipients]}
        payload = {"id": str(channel_id), "type": channel.type, "guild_id": str(channel.guild_id),
                   "name": channel.name, "position": 0, "permission_overwrites": [], "nsfw": False,
                   "parent_id": None, "topic": None, "rate_limit_per_user": 0, "last_message_id": None}
        deny = self.bot_denied(channel)
        if deny:
            payload["permission_overwrites"] = [{"id": str(self.app_id), "type": 1, "allow": "0", "deny": str(deny)}]
        return payload

    @staticmethod
    def bot_denied(channel: ChannelState) -> int:
        """The permissions a channel's overwrite takes from the bot."""
        return (0 if channel.bot_can_send else Perm.SEND_MESSAGES) | (0 if channel.bot_can_attach else
                                                                      Perm.ATTACH_FILES)

    def member_payload(self, guild_id: int, user_id: int) -> Payload:
        guild = self.guilds[guild_id]
        roles = [str(guild.admin_role)] if user_id in guild.admins else []
        roles += [str(role_id) for role_id, role in guild.roles.items() if user_id in role.members]
        return {"user": self.users[user_id], "roles": roles, "joined_at": iso(self.clock()), "deaf": False,
                "mute": False, "flags": 0, "nick": None, "avatar": None, "pending": False}

    def extra_roles_payload(self, guild_id: int) -> list[Payload]:
        return [{"id": str(role_id), "name": role.name, "permissions": "0", "position": 1, "color": 0,
                 "hoist": False, "managed": False, "mentionable": False, "flags": 0}
                for role_id, role in self.guilds[guild_id].roles.items()]

    def team_payload(self) -> Payload | None:
        """With `team_members` set the app belongs to a team (the admin user is its owner), as Discord says."""
        if self.team_members is None:
            return None
        team_id = str(self.app_id + 1)
        return {"id": team_id, "name": "Sandbox Team", "icon": None, "owner_user_id": str(self.admin),
                "members": [{"membership_state": 2, "team_id": team_id, "user": self.users[user_id],
                             "role": "admin", "permissions": ["*"]} for user_id in self.team_members]}

    def member_permissions(self, guild_id: int, user_id: int) -> int:
        return ALL_PERMISSIONS if self.is_admin(guild_id, user_id) else DEFAULT_MEMBER_PERMISSIONS

    def guild_payload(self, guild_id: int) -> Payload:
        guild = self.guilds[guild_id]
        role = {"color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        everyone = role | {"id": str(guild_id), "name": "@everyone", "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                           "position": 0}
        admin_role = role | {"id": str(guild.admin_role), "name": "admin", "permissions": str(ALL_PERMISSIONS),
                             "position": 1}
        bot_role = role | {"id": str(guild.bot_role), "name": self.bot_user["username"],
                           "permissions": str(BOT_PERMISSIONS), "position": 2, "managed": True,
                           "tags": {"bot_id": str(self.app_id)}}
        members = [self.member_payload(guild_id, uid) for uid in guild.members if uid in self.users]
        bot_member = self.member_payload(guild_id, self.app_id) | {"roles": [str(guild.bot_role)]}
        return {
            "id": str(guild_id), "name": guild.name, "owner_id": str(guild.owner_id), "icon": None,
            "premium_tier": guild.premium_tier, "features": [], "emojis": [], "stickers": [],
            "roles": [everyone, admin_role, bot_role, *self.extra_roles_payload(guild_id)],
            "channels": [self.channel_payload(c) for c in guild.channels],
            "members": [*members, bot_member], "member_count": len(members) + 1, "unavailable": False,
            "large": False, "threads": [], "voice_states": [], "presences": [], "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
            "system_channel_flags": 0, "preferred_locale": "en-US", "premium_subscription_count": 0,
            "joined_at": iso(self.clock()),
        }

    # -- monetization: SKUs and entitlements --------------------------------------------------

    def add_sku(self, name: str, *, kind: int = SKU_CONSUMABLE, sku_id: int | None = None) -> int:
        """A published SKU of the application (consumable packs are type 3, subscriptions type 5)."""
        sku_id = sku_id or self.new_id()
        self.skus[sku_id] = {"id": str(sku_id), "type": kind, "application_id": str(self.app_id), "name": name,
                             "slug": name.lower().replace(" ", "-"), "flags": 4 if kind == SKU_CONSUMABLE else 128}
        self.changed()
        return sku_id

    def grant_entitlement(self, user_id: int, sku_id: int, *, kind: int | None = None,
                          ends_at: float | None = None) -> Payload:
        """A user bought `sku_id` (or a test entitlement was made): the entitlement Discord would create."""
        sku = self.skus.get(sku_id)
        if sku is None:
            raise DiscordError(404, 10097, "Unknown SKU")
        if user_id not in self.users:
            raise DiscordError(404, 10013, "Unknown User")
        if kind is None:
            kind = ENTITLEMENT_APPLICATION_SUBSCRIPTION if sku["type"] == SKU_SUBSCRIPTION else ENTITLEMENT_PURCHASE
        entitlement_id = self.new_id()
        now = self.clock()
        entitlement: Payload = {
            "id": str(entitlement_id), "sku_id": str(sku_id), "application_id": str(self.app_id),
            "user_id": str(user_id), "type": kind, "deleted": False, "consumed": False,
            "starts_at": iso(now) if sku["type"] == SKU_SUBSCRIPTION else None,
            "ends_at": iso(ends_at) if ends_at is not None else None, "guild_id": None}
        self.entitlements[entitlement_id] = entitlement
        self.events.publish({"type": "entitlement_create", "entitlement": entitlement})
        return entitlement

    def entitlement(self, entitlement_id: int | str) -> Payload:
        try:
            return self.entitlements[int(entitlement_id)]
        except (KeyError, ValueError):
            raise DiscordError(404, 10029, "Unknown Entitlement") from None

    def consume_entitlement(self, entitlement_id: int | str) -> Payload:
        """Mark a consumable one-time purchase used; Discord refuses other SKU types and a second consume."""
        entitlement = self.entitlement(entitlement_id)
        sku = self.skus.get(int(entitlement["sku_id"]))
        if entitlement["deleted"]:
            raise DiscordError(404, 10029, "Unknown Entitlement")
        if sku is None or sku["type"] != SKU_CONSUMABLE:
            raise DiscordError(400, 40074, "Entitlement is not consumable")
        if entitlement["consumed"]:
            raise DiscordError(400, 40073, "Entitlement already consumed")
        entitlement["consumed"] = True
        self.events.publish({"type": "entitlement_update", "entitlement": entitlement})
        return entitlement

    def delete_entitlement(self, entitlement_id: int | str) -> Payload:
        """A refund (or a test entitlement removed): the entitlement stays listed with `deleted: true`."""
        entitlement = self.entitlement(entitlement_id)
        if entitlement["deleted"]:
            raise DiscordError(404, 10029, "Unknown Entitlement")
        entitlement["deleted"] = True
        self.events.publish({"type": "entitlement_delete", "entitlement": entitlement})
        return entitlement

    def end_entitlement(self, entitlement_id: int | str) -> Payload:
        """A subscription's period ran out without renewal: `ends_at` is now (an ENTITLEMENT_UPDATE)."""
        entitlement = self.entitlement(entitlement_id)
        entitlement["ends_at"] = iso(self.clock())
        self.events.publish({"type": "entitlement_update", "entitlement": entitlement})
        return entitlement

    def list_entitlements(self, *, user_id: int | None = None, sku_ids: set[int] | None = None,
                          before: int | None = None, after: int | None = None, limit: int = 100,
                          exclude_ended: bool = False, exclude_deleted: bool = True) -> list[Payload]:
        """GET /applications/{app}/entitlements, oldest first (as Discord pages it), with the spec's filters."""
        now = self.clock()
        chosen = []
        for entitlement_id, entitlement in sorted(self.entitlements.items()):
            if user_id is not None and entitlement["user_id"] != str(user_id):
                continue
            if sku_ids and int(entitlement["sku_id"]) not in sku_ids:
                continue
            if exclude_deleted and entitlement["deleted"]:
                continue
            ends_at = entitlement.get("ends_at")
            if exclude_ended and ends_at and datetime.fromisoformat(ends_at).timestamp() <= now:
                continue
            if (before is not None and entitlement_id >= before) or (after is not None and entitlement_id <= after):
                continue
            chosen.append(entitlement)
        limit = max(1, min(100, limit))
        # Ascending either way; `before` pages backwards, so it gets the newest `limit` before that id.
        return chosen[-limit:] if before is not None and after is None else chosen[:limit]

    # -- access --------------------------------------------------------------------------------

    def bot_channel(self, channel_id: int | str, *, send: bool = False, attach: bool = False) -> ChannelState:
        """The channel as the bot may use it: 10003 if unknown, 50001 without access, 50013 without permission."""
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        if channel.type == Channel.DM:
            if send and channel.recipient in self.dms_closed:
                raise DiscordError(403, 50007, "Cannot send messages to this user")
        elif channel.type == Channel.GROUP_DM:
            raise DiscordError(403, 50001, "Missing Access")  # a group DM the bot is not in (user installs)
        else:
            assert channel.guild_id is not None
            if not self.guilds[channel.guild_id].bot_member:
                raise DiscordError(403, 50001, "Missing Access")
            if (send and not channel.bot_can_send) or (attach and not channel.bot_can_attach):
                raise DiscordError(403, 50013, "Missing Permissions")
        return channel

    # -- commands ------------------------------------------------------------------------------

    def registered_commands(self, guild_id: int | None = None) -> list[Payload]:
        """What the bot synced (global, plus the guild's own when given)."""
        return list(self.commands.get(None, [])) + (list(self.commands.get(guild_id, [])) if guild_id else [])

    def find_command(self, name: str, guild_id: int | None) -> Payload:
        for command in self.registered_commands(guild_id):
            if command["name"] == name:
                return command
        raise KeyError(f"command /{name} is not registered")

    def store_commands(self, key: int | None, commands: list[Payload]) -> list[Payload]:
        """A bulk overwrite: names keep their ids, every command gets a new version."""
        existing = {c["name"]: c["id"] for c in self.commands.get(key, [])}
        stored = []
        for command in commands:
            command = dict(command)
            command["id"] = existing.get(command["name"], str(self.new_id()))
            command["application_id"] = str(self.app_id)
            command["version"] = str(self.new_id())
            command.setdefault("type", 1)
            if key is not None:
                command["guild_id"] = str(key)
            stored.append(command)
        self.commands[key] = stored
        self.events.publish({"type": "commands", "guild_id": key})
        return stored

    # -- messages ------------------------------------------------------------------------------

    def attachment_url(self, attachment_id: int, name: str) -> str:
        return f"{self.base_url}/attachments/{attachment_id}/{name}"

    def store_file(self, data: bytes, content_type: str, name: str) -> int:
        attachment_id = self.new_id()
        self.files[attachment_id] = stored = StoredFile(data, content_type, name)
        if self.on_file is not None:
            self.on_file(attachment_id, stored)
        return attachment_id

    def _attachments(self, body: Payload, files: Sequence[UploadedFile]) -> list[Payload]:
        described = body.get("attachments") or []
        out = []
        for index, (filename, data, content_type) in enumerate(files):
            meta = described[index] if index < len(described) else {}
            name = meta.get("filename") or filename
            if content_type == "application/octet-stream" and name.lower().endswith(".mp4"):
                content_type = "video/mp4"
            attachment_id = self.store_file(data, content_type, name)
            url = self.attachment_url(attachment_id, name)
            attachment = {"id": str(attachment_id), "filename": name, "size": len(data), "url": url,
                          "proxy_url": url, "content_type": content_type}
            if meta.get("description"):
                attachment["description"] = meta["description"]
            out.append(attachment)
        return out

    def new_message(self, channel_id: int, body: Payload, files: Sequence[UploadedFile], *, limit: int,
                    author: Payload, interaction: Interaction | None = None, loading: bool = False) -> Payload:
        """Validate, store and publish a message (an interaction's answer when `interaction` is given)."""
        validate_message(body, files, limit)
        if not loading and is_empty(body, files):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        channel = self.channels[channel_id]
        now = self.clock()
        message_id = self.new_id()
        flags = int(body.get("flags") or 0) | (Flag.LOADING if loading else 0)
        message: Payload = {
            "id": str(message_id), "channel_id": str(channel_id), "author": author,
            "content": body.get("content") or "", "timestamp": iso(now), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": self._attachments(body, files),
            "embeds": body.get("embeds") or [], "components": body.get("components") or [], "flags": flags,
            "type": Kind.COMMAND_MESSAGE if interaction is not None else Kind.DEFAULT_MESSAGE, "pinned": False,
            "allowed_mentions": body.get("allowed_mentions"),
        }
        self.created_at[str(message_id)] = now
        if channel.guild_id:
            message["guild_id"] = str(channel.guild_id)
        if body.get("nonce") is not None:
            message["nonce"] = str(body["nonce"])
        if interaction is not None:
            message["webhook_id"] = str(self.app_id)
            message["application_id"] = str(self.app_id)
            message["interaction_user_id"] = str(interaction.user_id)
            message["interaction_name"] = interaction.name
            message["interaction_metadata"] = {"id": str(interaction.id), "type": interaction.type,
                                               "user": self.users[interaction.user_id],
                                               "authorizing_integration_owners":
                                                   interaction.payload.get("authorizing_integration_owners", {})}
        self.messages[channel_id].append(message)
        self.events.publish({"type": "message_create", "channel_id": str(channel_id), "message": message})
        return message

    def edit_message(self, message: Payload, body: Payload, files: Sequence[UploadedFile], *, limit: int) -> Payload:
        """Validate an edit against the message it changes (its flags stick), then apply it."""
        validate_message(body, files, limit, current_flags=int(message.get("flags") or 0))
        return self.apply_edit(message, body, files)

    def apply_edit(self, message: Payload, body: Payload, files: Sequence[UploadedFile]) -> Payload:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or [] if "id" in a}
            kept = [a for a in message["attachments"] if a["id"] in keep]
            message["attachments"] = kept + self._attachments({"attachments": [
                a for a in body.get("attachments") or [] if str(a.get("id")) not in {k["id"] for k in kept}]}, files)
        flags = int(message.get("flags") or 0) & ~Flag.LOADING  # an edit ends the "thinking" state
        if body.get("flags") is not None:
            # Only SUPPRESS_EMBEDS can be toggled; IS_COMPONENTS_V2 can be added but never removed.
            flags = (flags & ~Flag.SUPPRESS_EMBEDS) | (int(body["flags"]) & (Flag.SUPPRESS_EMBEDS | Flag.COMPONENTS_V2))
        message["flags"] = flags
        message["edited_timestamp"] = iso(self.clock())
        self.events.publish({"type": "message_update", "channel_id": message["channel_id"], "message": message})
        return message

    def delete_message(self, message: Payload) -> None:
        self.messages[int(message["channel_id"])].remove(message)
        self.events.publish({"type": "message_delete", "channel_id": message["channel_id"],
                             "message_id": message["id"]})

    def find_message(self, message_id: int, channel_id: int | None = None) -> Payload:
        for key, messages in self.messages.items():
            if channel_id is not None and key != channel_id:
                continue
            for message in messages:
                if message["id"] == str(message_id):
                    return message
        raise DiscordError(404, 10008, "Unknown Message")

    def all_messages(self) -> list[Payload]:
        return [m for msgs in self.messages.values() for m in msgs]

    # -- events --------------------------------------------------------------------------------

    @property
    def log(self) -> list[Event]:
        """Every published event in order, messages as snapshots."""
        return self.events.log

    def subscribe(self) -> asyncio.Queue[Event]:
        return self.events.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.events.unsubscribe(queue)

    def channel_log(self, channel_id: int) -> list[Event]:
        return self.events.channel_log(channel_id)

    async def wait_for_message(self, channel_id: int | None, predicate: Predicate, *, within: float = 10.0,
                               existing: bool = True) -> Payload:
        """A message (created or edited) in `channel_id` that matches; already-present ones count."""
        if existing:
            pool = self.messages.get(channel_id, []) if channel_id is not None else self.all_messages()
            for message in pool:
                if predicate(message):
                    return message
        return await self.events.next_message(channel_id, predicate, within=within)
