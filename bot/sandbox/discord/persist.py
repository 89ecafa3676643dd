"""The loopback world on disk, so a sandbox restart shows the same guild, people, channels and messages
(and the bot's buttons on them still work: the bot's own database survives restarts too).

`world.json` holds everything but file contents, which go to `attachments/<id>` once, when uploaded. Saving
is debounced (many edits in a burst make one write) and atomic (a temporary file, fsynced, then renamed), so
a crash leaves either the previous world or the new one, never half of one; a crash inside the debounce
window loses at most that window. Interactions are not kept: their tokens would be dead after a restart of
any length that matters, and the bot already falls back to the channel or a DM when a token is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bot.sandbox.discord.world import ChannelState, GuildState, RoleState, StoredFile, World

log = logging.getLogger(__name__)

FORMAT = 1
NAMED = ("admin", "alice", "bob", "guild", "general")


def snapshot(world: World) -> dict[str, Any]:
    """The world as JSON-ready data (file contents excluded)."""
    return {
        "format": FORMAT,
        "base_url": world.base_url,
        "app_id": world.app_id,
        "bot_user": world.bot_user,
        "named": {name: getattr(world, name) for name in NAMED},
        "users": list(world.users.values()),
        "dms_closed": sorted(world.dms_closed),
        "guilds": [asdict(guild) | {"members": sorted(guild.members), "admins": sorted(guild.admins),
                                    "roles": [{"id": role_id, "name": role.name, "members": sorted(role.members)}
                                              for role_id, role in guild.roles.items()]}
                   for guild in world.guilds.values()],
        "team_members": world.team_members,
        "skus": list(world.skus.values()),
        "entitlements": list(world.entitlements.values()),
        "channels": [asdict(channel) for channel in world.channels.values()],
        "messages": {str(channel_id): messages for channel_id, messages in world.messages.items()},
        "created_at": world.created_at,
        "commands": [{"guild_id": key, "commands": commands} for key, commands in world.commands.items()],
        "files": {str(file_id): {"content_type": stored.content_type, "name": stored.name}
                  for file_id, stored in world.files.items()},
    }


def restore(world: World, data: dict[str, Any], attachments: Path) -> None:
    """Replace the world's state with a snapshot; attachment URLs are moved to the world's current address.

    Everything is read before anything is assigned, so a snapshot that fails to load leaves the world as it was.
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown sandbox world format {data.get('format')!r}")
    app_id, bot_user = int(data["app_id"]), data["bot_user"]
    named = {name: int(data["named"][name]) for name in NAMED}
    users = {int(user["id"]): user for user in data["users"]} | {app_id: bot_user}
    guilds = {}
    for guild in data["guilds"]:
        state = GuildState(**guild)
        state.members, state.admins = set(guild["members"]), set(guild["admins"])
        state.roles = {int(role["id"]): RoleState(role["name"], set(role["members"])) for role in guild["roles"]}
        guilds[state.id] = state
    channels = {channel["id"]: ChannelState(**channel) for channel in data["channels"]}
    messages = {channel_id: [] for channel_id in channels} | {
        int(channel_id): list(items) for channel_id, items in data["messages"].items()}
    commands = {None: []} | {entry["guild_id"]: entry["commands"] for entry in data["commands"]}
    files = {}
    for file_id, meta in data["files"].items():
        path = attachments / file_id
        if path.is_file():  # a file whose upload was cut short is simply gone, like an expired attachment
            files[int(file_id)] = StoredFile(path.read_bytes(), meta["content_type"], meta["name"])
    world.app_id, world.bot_user, world.users = app_id, bot_user, users
    for name, value in named.items():
        setattr(world, name, value)
    world.dms_closed = {int(user) for user in data["dms_closed"]}
    world.guilds, world.channels, world.messages, world.commands, world.files = guilds, channels, messages, \
        commands, files
    world.created_at = dict(data["created_at"])
    world.team_members = data.get("team_members")
    world.skus = {int(sku["id"]): sku for sku in data.get("skus", [])}
    world.entitlements = {int(e["id"]): e for e in data.get("entitlements", [])}
    world.saved_base_url = str(data.get("base_url") or "")


def rebase_urls(world: World, old: str, new: str) -> None:
    """Attachment URLs carry the server's address; a restart may listen on another port."""
    if not old or old == new:
        return
    for messages in world.messages.values():
        for message in messages:
            for attachment in message.get("attachments") or []:
                for key in ("url", "proxy_url"):
                    if str(attachment.get(key, "")).startswith(old + "/"):
                        attachment[key] = new + attachment[key][len(old):]


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class WorldStore:
    """Keeps one world in `directory`: loads it if present, then saves it shortly after each change."""

    def __init__(self, directory: Path, *, debounce: float = 0.5) -> None:
        self.directory = directory
        self.path = directory / "world.json"
        self.attachments = directory / "attachments"
        self.debounce = debounce
        self.saves = 0
        self._world: World | None = None
        self._pending: asyncio.TimerHandle | None = None

    def attach(self, world: World) -> bool:
        """Load the saved world into `world` if there is one (True), and save it from now on.

        Raises OSError at once when the folder cannot be created, rather than failing at the first save.
        """
        self.attachments.mkdir(parents=True, exist_ok=True)
        loaded = False
        if self.path.is_file():
            try:
                restore(world, json.loads(self.path.read_text(encoding="utf-8")), self.attachments)
                loaded = True
            except (ValueError, KeyError, TypeError) as error:
                # A world we cannot read is set aside, not overwritten, and the sandbox starts afresh.
                aside = self.path.with_suffix(".unreadable.json")
                os.replace(self.path, aside)
                log.warning("sandbox world in %s is unreadable (%s); moved to %s", self.path, error, aside.name)
        self._world = world
        world.on_change = self.schedule
        world.on_file = self.save_file
        return loaded

    def save_file(self, file_id: int, stored: StoredFile) -> None:
        """Written once, at upload; if that fails the file is still served until the sandbox stops."""
        try:
            write_atomically(self.attachments / str(file_id), stored.data)
        except OSError as error:
            log.warning("could not keep sandbox attachment %s: %s", file_id, error)

    def schedule(self) -> None:
        """Save soon: the first change in a quiet period starts the timer, later ones ride along."""
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a change outside the loop (world building before start): save right away
            self.flush()
            return
        self._pending = loop.call_later(self.debounce, self.flush)

    def flush(self) -> None:
        """Save now. A failed write (disk full) is logged and the previous file stays whole; the next change
        tries again."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._world is None:
            return
        data = json.dumps(snapshot(self._world), separators=(",", ":")).encode()
        try:
            write_atomically(self.path, data)
        except OSError as error:
            log.warning("could not save the sandbox world to %s: %s", self.path, error)
            return
        self.saves += 1
