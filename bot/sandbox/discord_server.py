"""A loopback Discord: REST + gateway enough for the unmodified discord.py client.

Tests and the sandbox run the real bot against it. It keeps guilds, channels, users, messages and
uploaded files in memory and enforces the Discord rules the bot must live with (3 s ack window,
15 min tokens, content and embed limits, upload limits, nonce de-duplication, permissions, DMs
closed), and can be told to answer chosen routes with 429 or 5xx. The gateway speaks zlib-stream when
asked (discord.py asks), numbers dispatches per session and replays missed ones on RESUME. Everything it
receives is recorded for assertions; changes are published to subscribers (the web console) and kept in
an ordered log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import logging
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

JSON = "application/json"
MiB = 1024 * 1024
TIER_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}
DISCORD_EPOCH_MS = 1_420_070_400_000
ACK_WINDOW = 3.0
TOKEN_LIFETIME = 15 * 60.0
NONCE_WINDOW = 300.0
NONCE_MAX_LENGTH = 25
HEARTBEAT_INTERVAL_MS = 41250
# Discord's ACK crosses a network; answering a heartbeat in the same loop iteration beat discord.py's
# keep-alive thread to recording the send time, so it measured a whole interval ("Can't keep up,
# websocket is 41.3s behind") although nothing was late. A real round trip's worth of delay avoids that.
HEARTBEAT_ACK_DELAY = 0.05
GATEWAY_BACKLOG = 1000
V2_FLAG = 1 << 15
V2_MAX_COMPONENTS = 40
ALL_PERMISSIONS = (1 << 50) - 1
DEFAULT_MEMBER_PERMISSIONS = 0x0000_0000_0400_0C40 | (1 << 15) | (1 << 14) | (1 << 38) | (1 << 31) | (1 << 11)
# View channel, send messages, embed links, attach files, read history, use app commands, threads.
BOT_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31) | (1 << 38)


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Point discord.py at another Discord: the two class attributes it reads."""
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class DiscordError(Exception):
    """An error answered in Discord's envelope."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float = 1.0


@dataclass
class GatewaySession:
    """A gateway session: its sequence numbers and the events it was sent, so a RESUME can replay them."""

    id: str
    shard: tuple[int, int] = (0, 1)
    socket: web.WebSocketResponse | None = None
    seq: int = 0
    resumes: int = 0
    backlog: deque[tuple[int, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=GATEWAY_BACKLOG))


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
    payload: dict[str, Any] = field(default_factory=dict)
    response_type: int | None = None
    response: dict[str, Any] | None = None
    original_message_id: int | None = None
    followups: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    error: str | None = None
    sent_at: float | None = None  # perf_counter when INTERACTION_CREATE went out (latency benchmarks)
    acked_at: float | None = None
    responded: asyncio.Event = field(default_factory=asyncio.Event)
    _followed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_response(self, within: float = 10.0) -> dict[str, Any]:
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

    def _add_followup(self, message_id: int) -> None:
        self.followups.append(message_id)
        event, self._followed = self._followed, asyncio.Event()
        event.set()


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    files: list[str]
    at: float


def _image_dimensions(data: bytes, content_type: str) -> dict[str, int]:
    """Discord sends `width` and `height` with image attachments (read from the header here, not decoded)."""
    if not content_type.startswith("image/"):
        return {}
    from io import BytesIO

    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
    try:
        with Image.open(BytesIO(data)) as image:
            return {"width": image.width, "height": image.height}
    except Exception:
        return {}
    finally:
        Image.MAX_IMAGE_PIXELS = limit


class LoopbackDiscord:
    """The fake Discord server."""

    def __init__(self, *, clock: Callable[[], float] = time.time, bot_name: str = "VideoBot") -> None:
        self.clock = clock
        self._counter = itertools.count()
        self.app_id = self.new_id()
        self.bot_user = self._user_payload(self.app_id, bot_name, bot=True)
        self.users: dict[int, dict[str, Any]] = {self.app_id: self.bot_user}
        self.dms_closed: set[int] = set()
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.files: dict[int, tuple[bytes, str, str]] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {None: []}
        self.interactions: dict[int, Interaction] = {}
        self.modals: dict[str, dict[str, Any]] = {}  # custom_id -> the last modal the bot showed with it
        self.requests: list[Recorded] = []
        self.log: list[dict[str, Any]] = []  # every published event in order, messages as snapshots
        self._created_at: dict[str, float] = {}  # message id -> Discord clock time (nonce window)
        self.faults: list[Fault] = []
        self.sessions: dict[str, GatewaySession] = {}
        self.gateway_log: list[tuple[str, str]] = []  # ("IDENTIFY" | "RESUME" | "INVALID_SESSION", session id)
        self.heartbeats = 0
        self._acks: set[asyncio.Task[None]] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._dropping: set[web.WebSocketResponse] = set()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._message_waiters: list[tuple[int | None, Callable[[dict[str, Any]], bool], asyncio.Future[Any]]] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.identified = asyncio.Event()
        self.team_members: list[int] | None = None  # set: the application belongs to a team of these users
        # A default world: one guild with #general, three people (one of them an admin).
        self.admin = self.add_user("admin")
        self.alice = self.add_user("alice")
        self.bob = self.add_user("bob")
        self.guild = self.add_guild("Sandbox Guild", owner=self.admin)
        self.general = self.add_channel(self.guild, "general")

    # -- world building ------------------------------------------------------------------------

    def new_id(self) -> int:
        """A snowflake carrying the current time, as discord.py derives created_at (and token expiry) from it."""
        millis = int(self.clock() * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (next(self._counter) % (1 << 22))

    @staticmethod
    def _user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {"id": str(user_id), "username": name, "global_name": name, "discriminator": "0", "avatar": None,
                "bot": bot, "public_flags": 0}

    def add_user(self, name: str, *, dms_closed: bool = False, age_days: float = 365.0) -> int:
        """A person whose account (the time in their id) is `age_days` old: bots judge new accounts by it."""
        millis = int((self.clock() - age_days * 86400) * 1000) - DISCORD_EPOCH_MS
        user_id = (millis << 22) | (next(self._counter) % (1 << 22))
        self.users[user_id] = self._user_payload(user_id, name)
        if dms_closed:
            self.dms_closed.add(user_id)
        return user_id

    def add_guild(self, name: str, *, owner: int | None = None, bot_member: bool = True,
                  premium_tier: int = 0, upload_limit: int | None = None) -> int:
        guild_id = self.new_id()
        owner = owner or self.admin
        self.guilds[guild_id] = {
            "id": guild_id, "name": name, "owner_id": owner, "premium_tier": premium_tier,
            "bot_member": bot_member, "channels": [], "members": set(self.users) - {self.app_id},
            "admins": {owner}, "upload_limit": upload_limit, "admin_role": self.new_id(), "bot_role": self.new_id(),
            "roles": {},  # extra roles: role id -> {"name", "members"}
        }
        return guild_id

    def add_role(self, guild_id: int, name: str, members: set[int] | frozenset[int] = frozenset()) -> int:
        """A plain role (no permissions) held by `members`; add it before the bot connects so its cache has it."""
        role_id = self.new_id()
        self.guilds[guild_id]["roles"][role_id] = {"name": name, "members": set(members)}
        return role_id

    def add_channel(self, guild_id: int, name: str, *, bot_can_send: bool = True,
                    bot_can_attach: bool = True) -> int:
        channel_id = self.new_id()
        self.channels[channel_id] = {"id": channel_id, "type": 0, "guild_id": guild_id, "name": name,
                                     "bot_can_send": bot_can_send, "bot_can_attach": bot_can_attach}
        self.guilds[guild_id]["channels"].append(channel_id)
        self.messages[channel_id] = []
        return channel_id

    def dm_channel(self, user_id: int) -> int:
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipient"] == user_id:
                return int(channel["id"])
        channel_id = self.new_id()
        self.channels[channel_id] = {"id": channel_id, "type": 1, "recipient": user_id, "guild_id": None,
                                     "name": f"dm-{self.users[user_id]['username']}"}
        self.messages[channel_id] = []
        return channel_id

    def add_group_dm(self, name: str, members: list[int]) -> int:
        """A group DM between users (the bot is not in it): only a user-installed app can be used there."""
        channel_id = self.new_id()
        self.channels[channel_id] = {"id": channel_id, "type": 3, "recipients": list(members), "guild_id": None,
                                     "name": name, "owner_id": members[0]}
        self.messages[channel_id] = []
        return channel_id

    def upload_limit(self, guild_id: int | None) -> int:
        if guild_id is None:
            return TIER_LIMITS[0]
        guild = self.guilds[guild_id]
        return guild["upload_limit"] or TIER_LIMITS[guild["premium_tier"]]

    # -- payloads ------------------------------------------------------------------------------

    def channel_payload(self, channel_id: int) -> dict[str, Any]:
        channel = self.channels[channel_id]
        if channel["type"] == 1:
            return {"id": str(channel_id), "type": 1, "recipients": [self.users[channel["recipient"]]],
                    "last_message_id": None}
        if channel["type"] == 3:
            return {"id": str(channel_id), "type": 3, "name": channel["name"], "icon": None,
                    "owner_id": str(channel["owner_id"]), "last_message_id": None,
                    "recipients": [self.users[u] for u in channel["recipients"]]}
        payload = {"id": str(channel_id), "type": 0, "guild_id": str(channel["guild_id"]), "name": channel["name"],
                   "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                   "rate_limit_per_user": 0, "last_message_id": None}
        deny = 0
        if not channel["bot_can_send"]:
            deny |= 1 << 11
        if not channel["bot_can_attach"]:
            deny |= 1 << 15
        if deny:
            payload["permission_overwrites"] = [{"id": str(self.app_id), "type": 1, "allow": "0", "deny": str(deny)}]
        return payload

    def _member_payload(self, guild_id: int, user_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        roles = [str(guild["admin_role"])] if user_id in guild["admins"] else []
        roles += [str(role_id) for role_id, role in guild["roles"].items() if user_id in role["members"]]
        return {"user": self.users[user_id], "roles": roles, "joined_at": _iso(self.clock()), "deaf": False,
                "mute": False, "flags": 0, "nick": None, "avatar": None, "pending": False}

    def _extra_roles(self, guild_id: int) -> list[dict[str, Any]]:
        return [{"id": str(role_id), "name": role["name"], "permissions": "0", "position": 1, "color": 0,
                 "hoist": False, "managed": False, "mentionable": False, "flags": 0}
                for role_id, role in self.guilds[guild_id]["roles"].items()]

    def _guild_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        everyone = {"id": str(guild_id), "name": "@everyone", "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                    "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        admin_role = {"id": str(guild["admin_role"]), "name": "admin", "permissions": str(ALL_PERMISSIONS),
                      "position": 1, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        bot_role = {"id": str(guild["bot_role"]), "name": "VideoBot", "permissions": str(BOT_PERMISSIONS),
                    "position": 2, "color": 0, "hoist": False, "managed": True, "mentionable": False, "flags": 0,
                    "tags": {"bot_id": str(self.app_id)}}
        members = [self._member_payload(guild_id, uid) for uid in guild["members"] if uid in self.users]
        bot_member = self._member_payload(guild_id, self.app_id) | {"roles": [str(guild["bot_role"])]}
        return {
            "id": str(guild_id), "name": guild["name"], "owner_id": str(guild["owner_id"]), "icon": None,
            "premium_tier": guild["premium_tier"], "features": [], "emojis": [], "stickers": [],
            "roles": [everyone, admin_role, bot_role, *self._extra_roles(guild_id)],
            "channels": [self.channel_payload(c) for c in guild["channels"]],
            "members": [*members, bot_member], "member_count": len(members) + 1, "unavailable": False,
            "large": False, "threads": [], "voice_states": [], "presences": [], "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
            "system_channel_flags": 0, "preferred_locale": "en-US", "premium_subscription_count": 0,
            "joined_at": _iso(self.clock()),
        }

    # -- server lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=200 * MiB, middlewares=[self._middleware])
        app.router.add_get("/", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for task in list(self._acks):
            task.cancel()
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # -- events for the console and tests ------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        self.log.append(copy.deepcopy(event) | {"at": self.clock()})
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        if event["type"] in ("message_create", "message_update"):
            message = event["message"]
            for waiter in list(self._message_waiters):
                channel_id, predicate, future = waiter
                if future.done():
                    self._message_waiters.remove(waiter)
                    continue
                if channel_id is not None and str(channel_id) != message["channel_id"]:
                    continue
                with contextlib.suppress(Exception):
                    if predicate(message):
                        future.set_result(message)
                        self._message_waiters.remove(waiter)

    async def wait_for_message(self, channel_id: int | None, predicate: Callable[[dict[str, Any]], bool],
                               *, within: float = 10.0, existing: bool = True) -> dict[str, Any]:
        """A message (created or edited) in `channel_id` that matches; already-present ones count."""
        if existing:
            pool = self.messages.get(channel_id, []) if channel_id is not None else \
                [m for msgs in self.messages.values() for m in msgs]
            for message in pool:
                if predicate(message):
                    return message
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._message_waiters.append((channel_id, predicate, future))
        async with asyncio.timeout(within):
            return await future

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.messages.values() for m in msgs]

    def channel_log(self, channel_id: int) -> list[dict[str, Any]]:
        """What happened in a channel, in order: message_create / message_update / message_delete snapshots."""
        return [event for event in self.log if event.get("channel_id") == str(channel_id)
                and event["type"].startswith("message_")]

    # -- gateway -------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then IDENTIFY (new session) or RESUME (replay what was missed)."""
        socket = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await socket.prepare(request)
        self._sockets.add(socket)
        # discord.py asks for compress=zlib-stream; answer in kind (one zlib context per connection), as Discord does.
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        socket._compressor = compressor  # type: ignore[attr-defined]
        session: GatewaySession | None = None
        await self._send(socket, {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                op = data.get("op")
                if op == 1:
                    self.heartbeats += 1
                    self._ack_later(socket)
                elif op == 2:
                    session = await self._identify(socket, data["d"])
                elif op == 6:
                    session = await self._resume(socket, data["d"])
                elif op == 8:
                    await self._member_chunk(socket, session, data["d"])
        finally:
            self._sockets.discard(socket)
            if session is not None and session.socket is socket:
                session.socket = None
                # A client that closes normally (1000/1001) ends its session; anything else may resume.
                if socket not in self._dropping and socket.close_code in (1000, 1001):
                    self.sessions.pop(session.id, None)
            self._dropping.discard(socket)
        return socket

    def _ack_later(self, socket: web.WebSocketResponse) -> None:
        """HEARTBEAT_ACK after HEARTBEAT_ACK_DELAY, without holding up the frames that follow the heartbeat."""
        async def ack() -> None:
            await asyncio.sleep(HEARTBEAT_ACK_DELAY)
            if not socket.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._send(socket, {"op": 11, "d": None, "s": None, "t": None})

        task = asyncio.create_task(ack())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _send(self, socket: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        compressor = getattr(socket, "_compressor", None)
        if compressor is None:
            await socket.send_str(text)
        else:
            await socket.send_bytes(compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH))

    async def _identify(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession:
        shard = data.get("shard") or [0, 1]
        session = GatewaySession(id=secrets.token_hex(8), shard=(int(shard[0]), int(shard[1])), socket=socket)
        self.sessions[session.id] = session
        socket._shard = session.shard  # type: ignore[attr-defined]
        self.gateway_log.append(("IDENTIFY", session.id))
        mine = [g for g, v in self.guilds.items() if v["bot_member"] and self._shard_of(g, session.shard[1])
                == session.shard[0]]
        ready = {
            "v": 10, "user": self.bot_user, "session_id": session.id, "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": str(g), "unavailable": True} for g in mine],
            "application": {"id": str(self.app_id), "flags": 0}, "private_channels": [],
            "relationships": [], "presences": [], "shard": list(session.shard), "session_type": "normal",
        }
        await self._dispatch_to(session, "READY", ready)
        for guild_id in mine:
            await self._dispatch_to(session, "GUILD_CREATE", self._guild_payload(guild_id))
        self.identified.set()
        return session

    async def _resume(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None:
            self.gateway_log.append(("INVALID_SESSION", str(data.get("session_id"))))
            await self._send(socket, {"op": 9, "d": False, "s": None, "t": None})
            return None
        if session.socket is not None and session.socket is not socket:
            self._dropping.add(session.socket)
            await session.socket.close(code=4000, message=b"resumed elsewhere")
        session.socket = socket
        socket._shard = session.shard  # type: ignore[attr-defined]
        session.resumes += 1
        after = int(data.get("seq") or 0)
        missed = [raw for seq, raw in session.backlog if seq > after]
        self.gateway_log.append(("RESUME", session.id))
        for raw in missed:
            await self._send(socket, raw)
        await self._dispatch_to(session, "RESUMED", {})
        self.identified.set()
        return session

    async def _member_chunk(self, socket: web.WebSocketResponse, session: GatewaySession | None,
                            data: dict[str, Any]) -> None:
        """Answer REQUEST_GUILD_MEMBERS so a bot with the members intent does not wait for chunks."""
        if session is None or int(data.get("guild_id") or 0) not in self.guilds:
            return
        guild_id = int(data["guild_id"])
        payload = self._guild_payload(guild_id)
        await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", {
            "guild_id": str(guild_id), "members": payload["members"], "chunk_index": 0, "chunk_count": 1,
            "not_found": [], "nonce": data.get("nonce")})

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        """Number the event in the session, keep it for a resume, and send it if the client is connected."""
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.backlog.append((session.seq, payload))
        if session.socket is None or session.socket.closed:
            return
        try:
            await self._send(session.socket, payload)
        except (ConnectionResetError, RuntimeError):  # the connection went away mid-send; a resume replays it
            log.debug("gateway send failed for session %s", session.id)

    @staticmethod
    def _shard_of(guild_id: int, count: int) -> int:
        """Discord's shard formula."""
        return (int(guild_id) >> 22) % max(int(count), 1)

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the shard that owns its guild (DMs go to shard 0), as Discord does.

        Sessions whose connection dropped still get it in their backlog, so a RESUME delivers it.
        """
        guild_id = data.get("guild_id") or (data.get("id") if event == "GUILD_CREATE" else None)
        for session in list(self.sessions.values()):
            shard_id, count = session.shard
            owner = self._shard_of(int(guild_id), count) if guild_id else 0
            if owner == shard_id:
                await self._dispatch_to(session, event, data)

    async def drop_connections(self, *, resumable: bool = True) -> None:
        """Close every gateway socket, as Discord does on a restart; `resumable=False` also forgets the sessions."""
        self.identified.clear()
        if not resumable:
            self.sessions.clear()
        for socket in list(self._sockets):
            self._dropping.add(socket)
            await socket.close(code=4000 if resumable else 4009, message=b"reconnect")

    # -- interactions --------------------------------------------------------------------------

    def registered_commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """What the bot synced (global, plus the guild's own when given)."""
        return list(self.commands.get(None, [])) + (list(self.commands.get(guild_id, [])) if guild_id else [])

    def _find_command(self, name: str, guild_id: int | None) -> dict[str, Any]:
        for command in self.registered_commands(guild_id):
            if command["name"] == name:
                return command
        raise KeyError(f"command /{name} is not registered")

    async def invoke(
        self,
        command: str,
        *,
        user: int,
        channel: int,
        options: dict[str, Any] | None = None,
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
        context: str | None = None,
    ) -> Interaction:
        """Fire a slash command as Discord would, typing each option from the command the bot registered.

        `command` may hold subcommands ("credits grant"); `context` ("guild", "dm", "user_install",
        "private_channel") is inferred from the channel when not given.
        """
        parts = command.lstrip("/").split()
        channel_data = self.channels[channel]
        guild_id = channel_data.get("guild_id")
        spec = self._find_command(parts[0], guild_id)
        options = dict(options or {})
        attachments = dict(attachments or {})
        resolved: dict[str, Any] = {}
        leaf_specs = spec.get("options", [])
        nested: list[dict[str, Any]] = []
        container = nested
        for part in parts[1:]:
            sub = next((o for o in leaf_specs if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise KeyError(f"/{parts[0]} has no subcommand {part!r}")
            node = {"name": part, "type": sub["type"], "options": []}
            container.append(node)
            container = node["options"]
            leaf_specs = sub.get("options", [])
        if any(o["type"] in (1, 2) for o in leaf_specs):
            raise KeyError(f"/{command} needs a subcommand: {[o['name'] for o in leaf_specs]}")
        for name, value in options.items():
            option = next((o for o in leaf_specs if o["name"] == name), None)
            if option is None:
                raise KeyError(f"/{command} has no option {name}")
            if option["type"] == 11:
                raise ValueError(f"give attachment option {name!r} through attachments=")
            container.append({"name": name, "type": option["type"], "value": _typed(option["type"], value)})
            self._resolve(option["type"], int(value) if option["type"] in (6, 7, 8, 9) else 0, guild_id, resolved)
        for name, (filename, data, content_type) in attachments.items():
            option = next((o for o in leaf_specs if o["name"] == name), None)
            if option is None or option["type"] != 11:
                raise KeyError(f"/{command} has no attachment option {name}")
            attachment_id = self.new_id()
            self.files[attachment_id] = (data, content_type, filename)
            container.append({"name": name, "type": 11, "value": str(attachment_id)})
            resolved.setdefault("attachments", {})[str(attachment_id)] = {
                "id": str(attachment_id), "filename": filename, "size": len(data), "content_type": content_type,
                "url": f"{self.base_url}/attachments/{attachment_id}/{filename}",
                "proxy_url": f"{self.base_url}/attachments/{attachment_id}/{filename}", "ephemeral": True,
                **_image_dimensions(data, content_type),
            }
        missing = [o["name"] for o in leaf_specs if o.get("required") and o["name"] not in options
                   and o["name"] not in attachments]
        if missing:
            raise KeyError(f"/{command} is missing required options {missing}")
        data = {"id": spec["id"], "name": parts[0], "type": spec.get("type", 1), "options": nested}
        if resolved:
            data["resolved"] = resolved
        return await self._fire(2, data, user=user, channel=channel, context=context, name=" ".join(parts))

    def _resolve(self, option_type: int, value: int, guild_id: int | None, resolved: dict[str, Any]) -> None:
        """Fill `data.resolved` for user/channel/mentionable options, as Discord sends the objects along."""
        if option_type in (6, 9) and value in self.users:
            resolved.setdefault("users", {})[str(value)] = self.users[value]
            if guild_id is not None:
                member = self._member_payload(guild_id, value)
                member.pop("user")
                resolved.setdefault("members", {})[str(value)] = member | {"permissions": "0"}
        elif option_type == 8 and guild_id is not None:
            role = next((r for r in self._extra_roles(guild_id) if r["id"] == str(value)), None)
            if role is not None:
                resolved.setdefault("roles", {})[str(value)] = role
        elif option_type == 7 and value in self.channels:
            channel = self.channel_payload(value)
            resolved.setdefault("channels", {})[str(value)] = {
                "id": channel["id"], "type": channel["type"], "name": channel.get("name"), "permissions": "0",
                **({"guild_id": channel["guild_id"]} if "guild_id" in channel else {})}

    async def click(self, message: dict[str, Any], custom_id: str, *, user: int,
                    values: list[str] | None = None) -> Interaction:
        """Press a button (by custom_id or label) or pick `values` in a select, anywhere in the message's tree."""
        found = next((c for c in _walk_components(message.get("components") or [])
                      if c.get("custom_id") == custom_id or (c.get("label") == custom_id and c.get("custom_id"))),
                     None)
        if found is None:
            raise KeyError(f"no component {custom_id!r} on message {message['id']}")
        if found.get("disabled"):
            raise KeyError(f"component {custom_id!r} is disabled")  # nothing clickable by that name
        data: dict[str, Any] = {"custom_id": found["custom_id"], "component_type": found["type"]}
        if found["type"] != 2:
            data["values"] = list(values or [])
        return await self._fire(3, data, user=user, channel=int(message["channel_id"]), message=message)

    async def submit_modal(self, custom_id: str, values: dict[str, Any], *, user: int, channel: int) -> Interaction:
        """Submit a modal the bot showed, answering its fields by custom_id in the modal's own layout."""
        modal = self.modals.get(custom_id)
        if modal is None:
            components = [{"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
                          for key, value in values.items()]
        else:
            components = [_modal_answer(component, values) for component in modal.get("components") or []]
        return await self._fire(5, {"custom_id": custom_id, "components": components}, user=user, channel=channel)

    async def _fire(self, kind: int, data: dict[str, Any], *, user: int, channel: int, context: str | None = None,
                    name: str | None = None, message: dict[str, Any] | None = None) -> Interaction:
        channel_data = self.channels[channel]
        guild_id = channel_data.get("guild_id")
        if context is None:
            if channel_data["type"] == 1:
                context = "dm"
            elif channel_data["type"] == 3:
                context = "private_channel"
            else:
                context = "guild" if self.guilds[guild_id]["bot_member"] else "user_install"
        upload_limit = self.upload_limit(guild_id)
        interaction = Interaction(id=self.new_id(), token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48), type=kind,
                                  user_id=user, channel_id=channel, guild_id=guild_id, created_at=self.clock(),
                                  name=name, context=context, upload_limit=upload_limit)
        payload: dict[str, Any] = {
            "id": str(interaction.id), "application_id": str(self.app_id), "type": kind, "token": interaction.token,
            "version": 1, "data": data, "locale": "en-US", "entitlements": [],
            "attachment_size_limit": upload_limit, "channel_id": str(channel),
            "channel": self.channel_payload(channel),
        }
        if guild_id is not None:
            guild = self.guilds[guild_id]
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            perms = ALL_PERMISSIONS if user in guild["admins"] else DEFAULT_MEMBER_PERMISSIONS
            payload["member"] = self._member_payload(guild_id, user) | {"permissions": str(perms)}
            payload["context"] = 0
            if context == "user_install":
                payload["authorizing_integration_owners"] = {"1": str(user)}
                payload["app_permissions"] = str((1 << 11) | (1 << 14) | (1 << 15))
            else:
                payload["authorizing_integration_owners"] = {"0": str(guild_id)}
                allowed = BOT_PERMISSIONS
                if not channel_data["bot_can_send"]:
                    allowed &= ~(1 << 11)
                if not channel_data["bot_can_attach"]:
                    allowed &= ~(1 << 15)
                payload["app_permissions"] = str(allowed)
        else:
            payload["user"] = self.users[user]
            payload["context"] = 2 if channel_data["type"] == 3 else 1
            payload["authorizing_integration_owners"] = {"1": str(user)}
            payload["app_permissions"] = str(BOT_PERMISSIONS)
        if message is not None:
            payload["message"] = message
        interaction.payload = payload
        self.interactions[interaction.id] = interaction
        interaction.sent_at = time.perf_counter()
        await self.broadcast("INTERACTION_CREATE", payload)
        return interaction

    # -- REST ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except DiscordError as error:
            body: dict[str, Any] = {"message": error.message, "code": error.code}
            if error.errors:
                body["errors"] = error.errors
            return _json(body, status=error.status)

    async def _attachment(self, request: web.Request) -> web.Response:
        stored = self.files.get(int(request.match_info["id"]))
        if stored is None:
            return web.Response(status=404)
        data, content_type, _ = stored
        return web.Response(body=data, content_type=content_type)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        files: list[tuple[str, bytes, str]] = []
        if request.content_type.startswith("multipart/"):
            body: Any = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(await part.read(decode=True))  # type: ignore[union-attr]
                else:
                    data = await part.read(decode=False)  # type: ignore[union-attr]
                    files.append((part.filename or "file", bytes(data),  # type: ignore[union-attr]
                                  part.headers.get("Content-Type", "application/octet-stream")))
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), files

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        self.requests.append(Recorded(request.method, path, body, [f[0] for f in files], self.clock()))
        for fault in self.faults:
            if fault.times > 0 and fault.method in (request.method, "*") and fault.pattern.search(path):
                fault.times -= 1
                return self._fault_response(fault)
        for method, pattern, handler in self._routes():
            if method != request.method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                result = await handler(request, body, files, *match.groups())
                if isinstance(result, web.StreamResponse):
                    return result
                return _json(result)
        raise DiscordError(404, 0, f"404: Not Found ({request.method} {path})")

    def inject(self, route: str, *, status: int, times: int = 1, retry_after: float = 1.0,
               method: str = "*") -> None:
        """Answer the next `times` requests whose path matches `route` (regex) with `status`."""
        self.faults.append(Fault(method, re.compile(route), status, times, retry_after))

    @staticmethod
    def _fault_response(fault: Fault) -> web.Response:
        if fault.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": fault.retry_after, "global": False}
            headers = {"Via": "1.1 google", "Retry-After": str(max(1, int(fault.retry_after + 0.999))),
                       "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset-After": str(fault.retry_after), "X-RateLimit-Bucket": "fake",
                       "X-RateLimit-Scope": "user"}
            return _json(body, status=429, headers=headers)
        return _json({"message": "Server error", "code": 0}, status=fault.status)

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/oauth2/applications/@me", self._get_app),
            ("GET", r"/gateway(?:/bot)?", self._get_gateway),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("GET", r"/applications/(\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_guild_commands),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_guild_commands),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._get_webhook_message),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._edit_webhook_message),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._delete_webhook_message),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("GET", r"/channels/(\d+)/messages", self._list_messages),
            ("GET", r"/channels/(\d+)/messages/(\d+)", self._get_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_channel_message),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)", self._delete_channel_message),
            ("POST", r"/channels/(\d+)/typing", self._typing),
            ("GET", r"/channels/(\d+)", self._get_channel),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/users/(\d+)", self._get_user),
            ("GET", r"/guilds/(\d+)", self._get_guild),
            ("GET", r"/guilds/(\d+)/members/(\d+)", self._get_member),
        ]

    async def _get_me(self, request: web.Request, body: Any, files: Any) -> Any:
        return self.bot_user

    async def _get_app(self, request: web.Request, body: Any, files: Any) -> Any:
        return {"id": str(self.app_id), "name": self.bot_user["username"], "icon": None, "description": "",
                "bot_public": True, "bot_require_code_grant": False, "owner": self.users[self.admin],
                "verify_key": "0" * 64, "team": self._team_payload(), "flags": 0, "summary": "", "rpc_origins": []}

    def _team_payload(self) -> dict[str, Any] | None:
        """With `team_members` set the app belongs to a team (the admin user is its owner), as Discord says."""
        if self.team_members is None:
            return None
        team_id = str(self.app_id + 1)
        return {"id": team_id, "name": "Sandbox Team", "icon": None, "owner_user_id": str(self.admin),
                "members": [{"membership_state": 2, "team_id": team_id, "user": self.users[user_id],
                             "role": "admin", "permissions": ["*"]} for user_id in self.team_members]}

    async def _get_gateway(self, request: web.Request, body: Any, files: Any) -> Any:
        return {"url": self.gateway_url.rstrip("/"), "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}

    def _store_commands(self, key: int | None, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        self._publish({"type": "commands", "guild_id": key})
        return stored

    async def _put_commands(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        return self._store_commands(None, body or [])

    async def _get_commands(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        return self.commands.get(None, [])

    async def _put_guild_commands(self, request: web.Request, body: Any, files: Any, app: str, guild: str) -> Any:
        return self._store_commands(int(guild), body or [])

    async def _get_guild_commands(self, request: web.Request, body: Any, files: Any, app: str, guild: str) -> Any:
        return self.commands.get(int(guild), [])

    def _interaction_by_token(self, token: str) -> Interaction:
        for interaction in self.interactions.values():
            if interaction.token == token:
                if self.clock() - interaction.created_at > TOKEN_LIFETIME:
                    raise DiscordError(401, 50027, "Invalid Webhook Token")
                return interaction
        raise DiscordError(404, 10015, "Unknown Webhook")

    async def _callback(self, request: web.Request, body: Any, files: list[Any], interaction_id: str,
                        token: str) -> Any:
        interaction = self.interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.response_type is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock() - interaction.created_at > ACK_WINDOW:
            interaction.error = "late"
            raise DiscordError(404, 10062, "Unknown interaction")
        kind = int((body or {}).get("type") or 0)
        data = (body or {}).get("data") or {}
        if kind not in (4, 5, 6, 7, 9):
            raise DiscordError(400, 50035, "Invalid Form Body", {"type": "Value must be one of {4, 5, 6, 7, 9}."})
        if kind in (6, 7) and "message" not in interaction.payload:
            raise DiscordError(400, 50035, "Invalid Form Body", {"type": "Interaction callback type invalid."})
        if kind == 9 and interaction.type == 5:
            raise DiscordError(400, 50035, "Invalid Form Body", {"type": "A modal cannot answer a modal."})
        message = None
        if kind in (4, 5):
            flags = int(data.get("flags") or 0)
            message = self._new_message(interaction.channel_id, data if kind == 4 else {"flags": flags}, files,
                                        limit=interaction.upload_limit, author=self.bot_user,
                                        interaction=interaction, loading=kind == 5)
            interaction.original_message_id = int(message["id"])
        elif kind in (6, 7):
            original = self._find_message(int(interaction.payload["message"]["id"]))
            interaction.original_message_id = int(original["id"])
            if kind == 7:
                self._validate(data, files, interaction.upload_limit, current=original)
                message = self._apply_edit(original, data, files)
        elif kind == 9:
            self._validate_components(data.get("components") or [], {}, modal=True)
            interaction.modal = data
            self.modals[str(data.get("custom_id"))] = data
            self._publish({"type": "modal", "user_id": str(interaction.user_id), "data": data,
                           "channel_id": str(interaction.channel_id)})
        interaction.response_type = kind
        interaction.acked_at = time.perf_counter()
        interaction.response = data
        interaction.responded.set()
        self._publish({"type": "interaction_response", "interaction_id": str(interaction.id), "kind": kind})
        reply: dict[str, Any] = {"interaction": {
            "id": str(interaction.id), "type": interaction.type, "activity_instance_id": None,
            "response_message_id": message["id"] if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64),
        }}
        if message is not None:
            reply["resource"] = {"type": kind, "message": message}
        elif kind in (6, 9):
            reply["resource"] = {"type": kind}
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return reply

    async def _followup(self, request: web.Request, body: Any, files: list[Any], app: str, token: str) -> Any:
        interaction = self._interaction_by_token(token)
        if interaction.response_type is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if interaction.context != "guild" and len(interaction.followups) >= 5:
            raise DiscordError(400, 40094, "This interaction has hit the maximum number of follow up messages")
        message = self._new_message(interaction.channel_id, body or {}, files, limit=interaction.upload_limit,
                                    author=self.bot_user, interaction=interaction)
        interaction._add_followup(int(message["id"]))
        return message

    def _webhook_target(self, token: str, message_id: str) -> tuple[Interaction, dict[str, Any]]:
        interaction = self._interaction_by_token(token)
        target = interaction.original_message_id if message_id == "@original" else int(message_id)
        if target is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return interaction, self._find_message(target)

    async def _get_webhook_message(self, request: web.Request, body: Any, files: Any, app: str, token: str,
                                   message_id: str) -> Any:
        return self._webhook_target(token, message_id)[1]

    async def _edit_webhook_message(self, request: web.Request, body: Any, files: list[Any], app: str, token: str,
                                    message_id: str) -> Any:
        interaction, message = self._webhook_target(token, message_id)
        self._validate(body or {}, files, interaction.upload_limit)
        return self._apply_edit(message, body or {}, files)

    async def _delete_webhook_message(self, request: web.Request, body: Any, files: Any, app: str, token: str,
                                      message_id: str) -> Any:
        _, message = self._webhook_target(token, message_id)
        self._delete(message)
        return web.Response(status=204)

    def _bot_channel(self, channel_id: str, *, send: bool = False, attach: bool = False) -> dict[str, Any]:
        """The channel as the bot may use it: 10003 if unknown, 50001 without access, 50013 without permission."""
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        if channel["type"] == 1:
            if send and channel["recipient"] in self.dms_closed:
                raise DiscordError(403, 50007, "Cannot send messages to this user")
        elif channel["type"] == 3:
            raise DiscordError(403, 50001, "Missing Access")  # a group DM the bot is not in (user installs)
        else:
            if not self.guilds[channel["guild_id"]]["bot_member"]:
                raise DiscordError(403, 50001, "Missing Access")
            if (send and not channel["bot_can_send"]) or (attach and not channel["bot_can_attach"]):
                raise DiscordError(403, 50013, "Missing Permissions")
        return channel

    async def _create_message(self, request: web.Request, body: Any, files: list[Any], channel_id: str) -> Any:
        body = body or {}
        channel = self._bot_channel(channel_id, send=True, attach=bool(files))
        limit = TIER_LIMITS[0] if channel["type"] == 1 else self.upload_limit(channel["guild_id"])
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > NONCE_MAX_LENGTH:
            raise DiscordError(400, 50035, "Invalid Form Body", {"nonce": "Must be 25 or fewer in length."})
        if nonce is not None and body.get("enforce_nonce"):
            for message in reversed(self.messages[int(channel_id)]):
                if message.get("nonce") == str(nonce) and message["author"]["id"] == self.bot_user["id"] and \
                        self.clock() - self._created_at[message["id"]] < NONCE_WINDOW:
                    return message
        return self._new_message(int(channel_id), body, files, limit=limit, author=self.bot_user)

    def _find_message(self, message_id: int, channel_id: int | None = None) -> dict[str, Any]:
        for key, messages in self.messages.items():
            if channel_id is not None and key != channel_id:
                continue
            for message in messages:
                if message["id"] == str(message_id):
                    return message
        raise DiscordError(404, 10008, "Unknown Message")

    async def _get_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                           message_id: str) -> Any:
        self._bot_channel(channel_id)
        return self._find_message(int(message_id), int(channel_id))

    async def _list_messages(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        """Channel history, newest first, with Discord's before/after/limit paging."""
        self._bot_channel(channel_id)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = list(self.messages[int(channel_id)])
        if "before" in request.query:
            messages = [m for m in messages if int(m["id"]) < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if int(m["id"]) > int(request.query["after"])][:limit]
        return list(reversed(messages))[:limit]

    async def _edit_channel_message(self, request: web.Request, body: Any, files: list[Any], channel_id: str,
                                    message_id: str) -> Any:
        channel = self._bot_channel(channel_id)
        message = self._find_message(int(message_id), int(channel_id))
        if message["author"]["id"] != self.bot_user["id"]:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._validate(body or {}, files, self.upload_limit(channel.get("guild_id")), current=message)
        return self._apply_edit(message, body or {}, files)

    async def _delete_channel_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                                      message_id: str) -> Any:
        self._bot_channel(channel_id)
        message = self._find_message(int(message_id), int(channel_id))
        if message["author"]["id"] != self.bot_user["id"]:
            raise DiscordError(403, 50013, "Missing Permissions")  # the bot has no Manage Messages
        self._delete(message)
        return web.Response(status=204)

    async def _typing(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        self._bot_channel(channel_id, send=True)
        self._publish({"type": "typing", "channel_id": channel_id, "user_id": self.bot_user["id"]})
        return web.Response(status=204)

    def _delete(self, message: dict[str, Any]) -> None:
        self.messages[int(message["channel_id"])].remove(message)
        self._publish({"type": "message_delete", "channel_id": message["channel_id"], "message_id": message["id"]})

    async def _get_channel(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        if channel["type"] != 1:
            self._bot_channel(channel_id)
        return self.channel_payload(int(channel_id))

    async def _create_dm(self, request: web.Request, body: Any, files: Any) -> Any:
        recipient = int((body or {}).get("recipient_id") or 0)
        if recipient not in self.users or recipient == self.app_id:
            raise DiscordError(400, 50033, "Invalid Recipients")
        return self.channel_payload(self.dm_channel(recipient))

    async def _get_user(self, request: web.Request, body: Any, files: Any, user_id: str) -> Any:
        user = self.users.get(int(user_id))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return user

    async def _get_guild(self, request: web.Request, body: Any, files: Any, guild_id: str) -> Any:
        if int(guild_id) not in self.guilds or not self.guilds[int(guild_id)]["bot_member"]:
            raise DiscordError(403, 50001, "Missing Access")
        return self._guild_payload(int(guild_id))

    async def _get_member(self, request: web.Request, body: Any, files: Any, guild_id: str, user_id: str) -> Any:
        guild = self.guilds.get(int(guild_id))
        if guild is None or not guild["bot_member"]:
            raise DiscordError(403, 50001, "Missing Access")
        if int(user_id) != self.app_id and int(user_id) not in guild["members"]:
            raise DiscordError(404, 10007, "Unknown Member")
        return self._member_payload(int(guild_id), int(user_id))

    # -- messages ------------------------------------------------------------------------------

    def _validate(self, body: dict[str, Any], files: list[Any], limit: int, *,
                  current: dict[str, Any] | None = None) -> None:
        """Discord's form checks (50035 with per-field errors), then the per-file upload limit (413/40005)."""
        errors: dict[str, Any] = {}
        content = body.get("content")
        if content is not None and len(content) > 2000:
            errors["content"] = "Must be 2000 or fewer in length."
        flags = int(body.get("flags") or 0) | int((current or {}).get("flags") or 0)
        if flags & V2_FLAG:
            if body.get("content") or body.get("embeds"):
                errors["content"] = "The 'content' and 'embeds' fields cannot be used with Components V2."
            if len(list(_walk_components(body.get("components") or []))) > V2_MAX_COMPONENTS:
                errors["components"] = f"Must be {V2_MAX_COMPONENTS} or fewer in total."
        elif len(body.get("components") or []) > 5:
            errors["components"] = "Must be 5 or fewer in length."
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            errors["embeds"] = "Must be 10 or fewer in length."
        total = 0
        for index, embed in enumerate(embeds):
            checks = [("title", 256), ("description", 4096)]
            for key, maximum in checks:
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > maximum:
                    errors[f"embeds.{index}.{key}"] = f"Must be {maximum} or fewer in length."
            fields = embed.get("fields") or []
            if len(fields) > 25:
                errors[f"embeds.{index}.fields"] = "Must be 25 or fewer in length."
            for number, item in enumerate(fields):
                total += len(item.get("name") or "") + len(item.get("value") or "")
                if len(item.get("name") or "") > 256 or len(item.get("value") or "") > 1024:
                    errors[f"embeds.{index}.fields.{number}"] = "Field too long."
            footer = (embed.get("footer") or {}).get("text") or ""
            author = (embed.get("author") or {}).get("name") or ""
            total += len(footer) + len(author)
            if len(footer) > 2048:
                errors[f"embeds.{index}.footer.text"] = "Must be 2048 or fewer in length."
            if len(author) > 256:
                errors[f"embeds.{index}.author.name"] = "Must be 256 or fewer in length."
        if total > 6000:
            errors["embeds"] = "Embed size exceeds maximum size of 6000"
        self._validate_components(body.get("components") or [], errors)
        if len(files) > 10 or len(body.get("attachments") or []) > 10:
            errors["attachments"] = "Must be 10 or fewer in length."
        if errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors)
        for _, data, _ in files:
            if len(data) > limit:
                raise DiscordError(413, 40005, "Request entity too large")

    @staticmethod
    def _validate_components(components: list[dict[str, Any]], errors: dict[str, Any], *,
                             modal: bool = False) -> None:
        """custom_id: present on interactive components, at most 100 characters, unique in the message."""
        seen: set[str] = set()
        for component in _walk_components(components):
            custom_id = component.get("custom_id")
            if custom_id is None:
                if component.get("type") in (3, 4, 5, 6, 7, 8) or (component.get("type") == 2 and
                                                                   component.get("style") not in (5, 6)):
                    errors["components"] = "custom_id is required for this component."
                continue
            if len(custom_id) > 100:
                errors["components"] = "custom_id must be 100 or fewer in length."
            if custom_id in seen:
                errors["components"] = "Component custom id cannot be duplicated"
            seen.add(custom_id)
        if modal and errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors)

    def _attachments(self, body: dict[str, Any], files: list[tuple[str, bytes, str]]) -> list[dict[str, Any]]:
        described = body.get("attachments") or []
        out = []
        for index, (filename, data, content_type) in enumerate(files):
            meta = described[index] if index < len(described) else {}
            name = meta.get("filename") or filename
            attachment_id = self.new_id()
            if content_type == "application/octet-stream" and name.lower().endswith(".mp4"):
                content_type = "video/mp4"
            self.files[attachment_id] = (data, content_type, name)
            url = f"{self.base_url}/attachments/{attachment_id}/{name}"
            attachment = {"id": str(attachment_id), "filename": name, "size": len(data), "url": url,
                          "proxy_url": url, "content_type": content_type}
            if meta.get("description"):
                attachment["description"] = meta["description"]
            out.append(attachment)
        return out

    def _new_message(self, channel_id: int, body: dict[str, Any], files: list[Any], *, limit: int,
                     author: dict[str, Any], interaction: Interaction | None = None,
                     loading: bool = False) -> dict[str, Any]:
        self._validate(body, files, limit)
        if not loading and not (body.get("content") or body.get("embeds") or body.get("components") or files
                                or body.get("sticker_ids") or body.get("poll")):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        channel = self.channels[channel_id]
        now = self.clock()
        message_id = self.new_id()
        flags = int(body.get("flags") or 0) | (128 if loading else 0)
        message: dict[str, Any] = {
            "id": str(message_id), "channel_id": str(channel_id), "author": author,
            "content": body.get("content") or "", "timestamp": _iso(now), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": self._attachments(body, files),
            "embeds": body.get("embeds") or [], "components": body.get("components") or [], "flags": flags,
            "type": 20 if interaction is not None else 0, "pinned": False,
            "allowed_mentions": body.get("allowed_mentions"),
        }
        self._created_at[str(message_id)] = now
        if channel.get("guild_id"):
            message["guild_id"] = str(channel["guild_id"])
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
        self._publish({"type": "message_create", "channel_id": str(channel_id), "message": message})
        return message

    def _apply_edit(self, message: dict[str, Any], body: dict[str, Any], files: list[Any]) -> dict[str, Any]:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or [] if "id" in a}
            kept = [a for a in message["attachments"] if a["id"] in keep]
            message["attachments"] = kept + self._attachments({"attachments": [
                a for a in body.get("attachments") or [] if str(a.get("id")) not in {k["id"] for k in kept}]}, files)
        flags = int(message.get("flags") or 0) & ~128  # an edit ends the "thinking" state
        if body.get("flags") is not None:
            # Only SUPPRESS_EMBEDS can be toggled; IS_COMPONENTS_V2 can be added but never removed.
            flags = (flags & ~4) | (int(body["flags"]) & (4 | V2_FLAG))
        message["flags"] = flags
        message["edited_timestamp"] = _iso(self.clock())
        self._publish({"type": "message_update", "channel_id": message["channel_id"], "message": message})
        return message


def _typed(option_type: int, value: Any) -> Any:
    """An option value as Discord types it in the payload (the registered option type decides)."""
    if option_type == 4:
        return int(value)
    if option_type == 10:
        return float(value)
    if option_type == 5:
        return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
    if option_type in (6, 7, 8, 9, 11):
        return str(value)
    return value


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(data, default=_strip_private)
    response = web.Response(text=text, status=status, headers=headers)
    response.headers["Content-Type"] = JSON  # exactly this: a charset suffix breaks discord.py's login
    return response


def _strip_private(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def _walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component in a tree: action rows, Components V2 containers and sections, modal labels."""
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                yield from _walk_components([component[key]])


def _modal_answer(component: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What the Discord client submits for one modal component, filled from `values` (by custom_id)."""
    kind = component.get("type")
    if kind == 1:
        return {"type": 1, "components": [_modal_answer(child, values) for child in component.get("components", [])]}
    if kind == 18:
        answer = {"type": 18, "component": _modal_answer(component["component"], values)}
        return answer | ({"id": component["id"]} if "id" in component else {})
    custom_id = component.get("custom_id")
    if kind == 4:
        return {"type": 4, "custom_id": custom_id, "value": str(values.get(custom_id, component.get("value") or ""))}
    if kind in (3, 5, 6, 7, 8, 22):  # selects and checkbox groups (file uploads are not simulated: no values)
        chosen = values.get(custom_id, [])
        return {"type": kind, "custom_id": custom_id, "values": [str(v) for v in
                                                                 (chosen if isinstance(chosen, list) else [chosen])]}
    if kind == 19:
        return {"type": 19, "custom_id": custom_id, "values": []}
    if kind == 21:
        return {"type": 21, "custom_id": custom_id, "value": values.get(custom_id)}
    if kind == 23:
        return {"type": 23, "custom_id": custom_id, "value": bool(values.get(custom_id, False))}
    return {key: component[key] for key in ("type", "id", "custom_id") if key in component}


async def iterate(queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    while True:
        yield await queue.get()
