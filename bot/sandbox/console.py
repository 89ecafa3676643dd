"""The sandbox web console: a Discord-like page over the loopback Discord.

One HTML file (static/index.html) and a small JSON + server-sent-events API. The composer offers
exactly the commands the bot synced (read from the loopback server), so the page never goes out
of date with the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from discord import app_commands

from bot import catalogue
from bot.sandbox.discord import DiscordError, LoopbackDiscord
from bot.sandbox.discord.constants import Channel, Flag
from bot.web import serve_video

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if not key.startswith("_")}


class Console:
    """Serves the page, the API it calls, and the bot's stored videos (the public base URL)."""

    def __init__(self, server: LoopbackDiscord, video_dir: Path) -> None:
        self.server = server
        self.video_dir = video_dir
        self.bot: VideoBot | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/channels/{id}/messages", self._messages)
        app.router.add_post("/api/dm", self._dm)
        app.router.add_post("/api/invoke", self._invoke)
        app.router.add_post("/api/click", self._click)
        app.router.add_post("/api/modal", self._modal)
        app.router.add_post("/api/buy", self._buy)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/videos/{name}", self._video)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host = host
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        page = resources.files("bot.sandbox").joinpath("static/index.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html")

    async def _state(self, request: web.Request) -> web.Response:
        server = self.server
        guild = server.guilds[server.guild]
        people = [user for uid, user in server.users.items() if uid != server.app_id]
        balances: dict[str, int] = {}
        if self.bot is not None and hasattr(self.bot, "store"):
            for user in people:
                with contextlib.suppress(Exception):
                    balances[user["id"]] = await self.bot.store.ledger.balance(int(user["id"]))
        dms = {str(channel.recipient): {"id": str(cid), "name": channel.name, "type": channel.type}
               for cid, channel in server.channels.items() if channel.type == Channel.DM}
        return web.json_response({
            "guild": {"id": str(server.guild), "name": guild.name},
            "permissions": {user["id"]: str(server.member_permissions(server.guild, int(user["id"])))
                            for user in people if int(user["id"]) in guild.members},
            "defaults": self._defaults(),
            "channels": [{"id": str(cid), "name": server.channels[cid].name, "type": Channel.TEXT}
                         for cid in guild.channels],
            "dms": dms,
            "users": people,
            "bot_name": server.bot_user["username"],
            "commands": server.registered_commands(server.guild),
            "balances": balances,
            "skus": list(server.skus.values()),
        })

    def _defaults(self) -> dict[str, dict[str, Any]]:
        """Each command's option defaults, from the bot's own signatures: Discord's command payload has none,
        and a person choosing options wants to know what leaving one empty means."""
        if self.bot is None:
            return {}
        defaults: dict[str, dict[str, Any]] = {}
        models = catalogue.current()
        for command in self.bot.tree.walk_commands():
            if not isinstance(command, app_commands.Command):
                continue
            values = {parameter.name: parameter.default for parameter in command.parameters
                      if not parameter.required and parameter.default is not None
                      and isinstance(parameter.default, str | int | float | bool)}
            names = {parameter.name for parameter in command.parameters}
            if command.qualified_name in models.families:  # model-dependent: show the family default model's
                spec = models.default(command.qualified_name)
                values.update({name: value for name, value in (("model", spec.id), ("duration", spec.duration_default))
                               if name in names and name not in values})
            if values:
                defaults[command.qualified_name] = values
        return defaults

    async def _messages(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["id"])
        return web.json_response([_public(m) for m in self.server.messages.get(channel_id, [])])

    async def _dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        channel_id = self.server.dm_channel(int(body["user_id"]))
        return web.json_response({"id": str(channel_id), "name": self.server.channels[channel_id].name,
                                  "type": Channel.DM})

    async def _invoke(self, request: web.Request) -> web.Response:
        payload: dict[str, Any] = {}
        attachments: dict[str, tuple[str, bytes, str]] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            name = part.name or ""  # type: ignore[union-attr]
            if name == "payload":
                payload = json.loads(await part.text())  # type: ignore[union-attr]
            elif name.startswith("file:"):
                data = bytes(await part.read())  # type: ignore[union-attr]
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                attachments[name[5:]] = (part.filename or "upload", data, content_type)  # type: ignore[union-attr]
        try:
            interaction = await self.server.invoke(
                payload["command"], user=int(payload["user_id"]), channel=int(payload["channel_id"]),
                options=payload.get("options") or {}, attachments=attachments,
            )
        except (KeyError, StopIteration, ValueError) as error:
            return web.json_response({"error": f"cannot run that command: {error}"}, status=400)
        # Wait for the bot's acknowledgement (Discord gives it 3 s) so the page can tell a public answer (clear
        # the composer, as Discord does) from a private one such as a refusal (keep the draft to fix it).
        with contextlib.suppress(TimeoutError):
            await interaction.wait_response(within=3.5)
        flags = int((interaction.response or {}).get("flags") or 0)
        return web.json_response({"interaction_id": str(interaction.id),
                                  "answered": interaction.response_type is not None,
                                  "ephemeral": bool(flags & Flag.EPHEMERAL)})

    async def _click(self, request: web.Request) -> web.Response:
        body = await request.json()
        channel = int(body["channel_id"])
        message = next((m for m in self.server.messages.get(channel, []) if m["id"] == str(body["message_id"])), None)
        if message is None:
            return web.json_response({"error": "message not found"}, status=404)
        try:
            interaction = await self.server.click(message, body["custom_id"], user=int(body["user_id"]))
        except KeyError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"interaction_id": str(interaction.id)})

    async def _buy(self, request: web.Request) -> web.Response:
        """A premium button pressed: the pretend user buys the SKU (a test entitlement, as the dev portal makes)."""
        body = await request.json()
        try:
            entitlement = await self.server.purchase(int(body["user_id"]), int(body["sku_id"]), test=True)
        except (KeyError, ValueError, TypeError) as error:
            return web.json_response({"error": f"cannot buy that: {error}"}, status=400)
        except DiscordError as error:
            return web.json_response({"error": error.message}, status=error.status)
        return web.json_response({"entitlement_id": entitlement["id"]})

    async def _modal(self, request: web.Request) -> web.Response:
        body = await request.json()
        interaction = await self.server.submit_modal(body["custom_id"], dict(body["values"]),
                                                     user=int(body["user_id"]), channel=int(body["channel_id"]))
        return web.json_response({"interaction_id": str(interaction.id)})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue = self.server.subscribe()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                slim = {key: value for key, value in event.items() if key != "message"}
                await response.write(f"data: {json.dumps(slim)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.server.unsubscribe(queue)
        return response

    async def _video(self, request: web.Request) -> web.StreamResponse:
        """The bot's signed video links, checked exactly as the bot's own web server checks them."""
        if self.bot is None:
            raise web.HTTPNotFound
        return await serve_video(self.bot, request.match_info["name"])
