"""The gateway: HELLO, IDENTIFY or RESUME, heartbeats, numbered dispatches and their replay, shard routing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.sandbox.discord.constants import GATEWAY_BACKLOG, HEARTBEAT_ACK_DELAY, HEARTBEAT_INTERVAL_MS, Op
from bot.sandbox.discord.world import World

log = logging.getLogger(__name__)

Dispatch = dict[str, Any]


@dataclass(eq=False)
class Connection:
    """One gateway websocket and how we talk on it (one zlib context per connection, as Discord keeps)."""

    socket: web.WebSocketResponse
    compressor: Any = None  # zlib.compressobj() when the client asked for zlib-stream
    dropping: bool = False  # closed by us (restart, resumed elsewhere): its session survives
    shard: tuple[int, int] | None = None  # the shard of the session it carries, once identified or resumed

    async def send(self, payload: Dispatch) -> None:
        text = json.dumps(payload)
        if self.compressor is None:
            await self.socket.send_str(text)
        else:
            await self.socket.send_bytes(self.compressor.compress(text.encode()) +
                                         self.compressor.flush(zlib.Z_SYNC_FLUSH))


@dataclass(eq=False)
class GatewaySession:
    """A gateway session: its sequence numbers and the events it was sent, so a RESUME can replay them."""

    id: str
    shard: tuple[int, int] = (0, 1)
    connection: Connection | None = None
    seq: int = 0
    backlog: deque[tuple[int, Dispatch]] = field(default_factory=lambda: deque(maxlen=GATEWAY_BACKLOG))


def shard_of(guild_id: int, count: int) -> int:
    """Discord's shard formula."""
    return (int(guild_id) >> 22) % max(int(count), 1)


class Gateway:
    """Serves gateway connections for one world; `gateway_url` is read when READY is sent."""

    def __init__(self, world: World, gateway_url: Callable[[], str]) -> None:
        self.world = world
        self._gateway_url = gateway_url
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[Connection] = set()
        self.log: list[tuple[str, str]] = []  # ("IDENTIFY" | "RESUME" | "INVALID_SESSION", session id)
        self.heartbeats = 0
        self.identified = asyncio.Event()
        self._acks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then IDENTIFY (new session) or RESUME (replay what was missed)."""
        socket = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await socket.prepare(request)
        # discord.py asks for compress=zlib-stream; answer in kind, as Discord does.
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        connection = Connection(socket, compressor)
        self.connections.add(connection)
        session: GatewaySession | None = None
        await connection.send({"op": Op.HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None,
                               "t": None})
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                op = data.get("op")
                if op == Op.HEARTBEAT:
                    self.heartbeats += 1
                    self._ack_later(connection)
                elif op == Op.IDENTIFY:
                    session = await self._identify(connection, data["d"])
                elif op == Op.RESUME:
                    session = await self._resume(connection, data["d"])
                elif op == Op.REQUEST_MEMBERS:
                    await self._member_chunk(session, data["d"])
        finally:
            self.connections.discard(connection)
            if session is not None and session.connection is connection:
                session.connection = None
                # A client that closes normally (1000/1001) ends its session; anything else may resume.
                if not connection.dropping and socket.close_code in (1000, 1001):
                    self.sessions.pop(session.id, None)
        return socket

    def _ack_later(self, connection: Connection) -> None:
        """HEARTBEAT_ACK after HEARTBEAT_ACK_DELAY, without holding up the frames that follow the heartbeat."""
        async def ack() -> None:
            await asyncio.sleep(HEARTBEAT_ACK_DELAY)
            if not connection.socket.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await connection.send({"op": Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})

        task = asyncio.create_task(ack())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> GatewaySession:
        shard = data.get("shard") or [0, 1]
        session = GatewaySession(id=secrets.token_hex(8), shard=(int(shard[0]), int(shard[1])),
                                 connection=connection)
        self.sessions[session.id] = session
        connection.shard = session.shard
        self.log.append(("IDENTIFY", session.id))
        world = self.world
        mine = [g for g, guild in world.guilds.items()
                if guild.bot_member and shard_of(g, session.shard[1]) == session.shard[0]]
        ready = {
            "v": 10, "user": world.bot_user, "session_id": session.id, "resume_gateway_url": self._gateway_url(),
            "guilds": [{"id": str(g), "unavailable": True} for g in mine],
            "application": {"id": str(world.app_id), "flags": 0}, "private_channels": [],
            "relationships": [], "presences": [], "shard": list(session.shard), "session_type": "normal",
        }
        await self.dispatch_to(session, "READY", ready)
        for guild_id in mine:
            await self.dispatch_to(session, "GUILD_CREATE", world.guild_payload(guild_id))
        self.identified.set()
        return session

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None:
            self.log.append(("INVALID_SESSION", str(data.get("session_id"))))
            await connection.send({"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        previous = session.connection
        if previous is not None and previous is not connection:
            previous.dropping = True
            await previous.socket.close(code=4000, message=b"resumed elsewhere")
        session.connection = connection
        connection.shard = session.shard
        after = int(data.get("seq") or 0)
        missed = [raw for seq, raw in session.backlog if seq > after]
        self.log.append(("RESUME", session.id))
        for raw in missed:
            await connection.send(raw)
        await self.dispatch_to(session, "RESUMED", {})
        self.identified.set()
        return session

    async def _member_chunk(self, session: GatewaySession | None, data: dict[str, Any]) -> None:
        """Answer REQUEST_GUILD_MEMBERS so a bot with the members intent does not wait for chunks."""
        if session is None or int(data.get("guild_id") or 0) not in self.world.guilds:
            return
        guild_id = int(data["guild_id"])
        payload = self.world.guild_payload(guild_id)
        await self.dispatch_to(session, "GUILD_MEMBERS_CHUNK", {
            "guild_id": str(guild_id), "members": payload["members"], "chunk_index": 0, "chunk_count": 1,
            "not_found": [], "nonce": data.get("nonce")})

    async def dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        """Number the event in the session, keep it for a resume, and send it if the client is connected."""
        session.seq += 1
        payload = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.backlog.append((session.seq, payload))
        connection = session.connection
        if connection is None or connection.socket.closed:
            return
        try:
            await connection.send(payload)
        except (ConnectionResetError, RuntimeError):  # the connection went away mid-send; a resume replays it
            log.debug("gateway send failed for session %s", session.id)

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the shard that owns its guild (DMs go to shard 0), as Discord does.

        Sessions whose connection dropped still get it in their backlog, so a RESUME delivers it.
        """
        guild_id = data.get("guild_id") or (data.get("id") if event == "GUILD_CREATE" else None)
        for session in list(self.sessions.values()):
            shard_id, count = session.shard
            owner = shard_of(int(guild_id), count) if guild_id else 0
            if owner == shard_id:
                await self.dispatch_to(session, event, data)

    async def drop_connections(self, *, resumable: bool = True) -> None:
        """Close every gateway socket, as Discord does on a restart; `resumable=False` also forgets the sessions."""
        self.identified.clear()
        if not resumable:
            self.sessions.clear()
        for connection in list(self.connections):
            connection.dropping = True
            await connection.socket.close(code=4000 if resumable else 4009, message=b"reconnect")

    async def close(self) -> None:
        for task in list(self._acks):
            task.cancel()
        for connection in list(self.connections):
            await connection.socket.close()
