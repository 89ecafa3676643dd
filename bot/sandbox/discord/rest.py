"""The REST API: a route table of small handlers over the world and the interactions, Discord's error
envelope, recorded requests for assertions, and faults (429 / 5xx) a test can inject on chosen routes."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sandbox.discord.constants import JSON, NONCE_MAX_LENGTH, NONCE_WINDOW, TIER_LIMITS, Channel
from bot.sandbox.discord.interactions import Interactions
from bot.sandbox.discord.rules import DiscordError, UploadedFile, invalid_form
from bot.sandbox.discord.world import ENTITLEMENT_TEST_MODE_PURCHASE, World

Handler = Callable[..., Awaitable[Any]]


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float = 1.0


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    files: list[str]
    at: float


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=json.dumps(data), status=status, headers=headers)
    response.headers["Content-Type"] = JSON  # exactly this: a charset suffix breaks discord.py's login
    return response


def fault_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        body = {"message": "You are being rate limited.", "retry_after": fault.retry_after, "global": False}
        headers = {"Via": "1.1 google", "Retry-After": str(max(1, int(fault.retry_after + 0.999))),
                   "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset-After": str(fault.retry_after), "X-RateLimit-Bucket": "fake",
                   "X-RateLimit-Scope": "user"}
        return json_response(body, status=429, headers=headers)
    return json_response({"message": "Server error", "code": 0}, status=fault.status)


async def read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    """A JSON body, or multipart's `payload_json` plus the uploaded files."""
    files: list[UploadedFile] = []
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




class Rest:
    """`/api/v10/...`: each request is recorded, may hit an injected fault, then goes to its handler."""

    def __init__(self, world: World, interactions: Interactions, gateway_url: Callable[[], str]) -> None:
        self.world = world
        self.interactions = interactions
        self._gateway_url = gateway_url
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.body_checks: list[Callable[[str, str, Any], None]] = []  # e.g. the OpenAPI schema check in tests
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(pattern), handler) for method, pattern, handler in [
                ("GET", r"/users/@me", self.get_me),
                ("GET", r"/oauth2/applications/@me", self.get_app),
                ("GET", r"/gateway(?:/bot)?", self.get_gateway),
                ("PUT", r"/applications/(\d+)/commands", self.put_commands),
                ("GET", r"/applications/(\d+)/commands", self.get_commands),
                ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self.put_guild_commands),
                ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self.get_guild_commands),
                ("POST", r"/interactions/(\d+)/([^/]+)/callback", self.callback),
                ("POST", r"/webhooks/(\d+)/([^/]+)", self.followup),
                ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self.get_webhook_message),
                ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self.edit_webhook_message),
                ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self.delete_webhook_message),
                ("POST", r"/channels/(\d+)/messages", self.create_message),
                ("GET", r"/channels/(\d+)/messages", self.list_messages),
                ("GET", r"/channels/(\d+)/messages/(\d+)", self.get_message),
                ("PATCH", r"/channels/(\d+)/messages/(\d+)", self.edit_channel_message),
                ("DELETE", r"/channels/(\d+)/messages/(\d+)", self.delete_channel_message),
                ("POST", r"/channels/(\d+)/typing", self.typing),
                ("GET", r"/channels/(\d+)", self.get_channel),
                ("POST", r"/users/@me/channels", self.create_dm),
                ("GET", r"/users/(\d+)", self.get_user),
                ("GET", r"/guilds/(\d+)", self.get_guild),
                ("GET", r"/guilds/(\d+)/members/(\d+)", self.get_member),
                ("GET", r"/applications/(\d+)/skus", self.list_skus),
                ("GET", r"/applications/(\d+)/entitlements", self.list_entitlements),
                ("POST", r"/applications/(\d+)/entitlements", self.create_test_entitlement),
                ("GET", r"/applications/(\d+)/entitlements/(\d+)", self.get_entitlement),
                ("DELETE", r"/applications/(\d+)/entitlements/(\d+)", self.delete_test_entitlement),
                ("POST", r"/applications/(\d+)/entitlements/(\d+)/consume", self.consume_entitlement),
            ]]

    def inject(self, route: str, *, status: int, times: int = 1, retry_after: float = 1.0,
               method: str = "*") -> None:
        """Answer the next `times` requests whose path matches `route` (regex) with `status`."""
        self.faults.append(Fault(method, re.compile(route), status, times, retry_after))

    # -- plumbing ------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except DiscordError as error:
            return json_response(error.envelope(), status=error.status)

    async def attachment(self, request: web.Request) -> web.Response:
        stored = self.world.files.get(int(request.match_info["id"]))
        if stored is None:
            return web.Response(status=404)
        return web.Response(body=stored.data, content_type=stored.content_type)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await read_body(request)
        self.requests.append(Recorded(request.method, path, body, [f[0] for f in files], self.world.clock()))
        for check in self.body_checks:
            check(request.method, path, body)
        for fault in self.faults:
            if fault.times > 0 and fault.method in (request.method, "*") and fault.pattern.search(path):
                fault.times -= 1
                return fault_response(fault)
        for method, pattern, handler in self.routes:
            if method != request.method:
                continue
            match = pattern.fullmatch(path)
            if match:
                result = await handler(request, body, files, *match.groups())
                if isinstance(result, web.StreamResponse):
                    return result
                return json_response(result)
        raise DiscordError(404, 0, f"404: Not Found ({request.method} {path})")

    # -- application, gateway, commands --------------------------------------------------------

    async def get_me(self, request: web.Request, body: Any, files: Any) -> Any:
        return self.world.bot_user

    async def get_app(self, request: web.Request, body: Any, files: Any) -> Any:
        world = self.world
        return {"id": str(world.app_id), "name": world.bot_user["username"], "icon": None, "description": "",
                "bot_public": True, "bot_require_code_grant": False, "owner": world.users[world.admin],
                "verify_key": "0" * 64, "team": world.team_payload(), "flags": 0, "summary": "", "rpc_origins": []}

    async def get_gateway(self, request: web.Request, body: Any, files: Any) -> Any:
        return {"url": self._gateway_url().rstrip("/"), "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}

    async def put_commands(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        return self.world.store_commands(None, body or [])

    async def get_commands(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        return self.world.commands.get(None, [])

    async def put_guild_commands(self, request: web.Request, body: Any, files: Any, app: str, guild: str) -> Any:
        return self.world.store_commands(int(guild), body or [])

    async def get_guild_commands(self, request: web.Request, body: Any, files: Any, app: str, guild: str) -> Any:
        return self.world.commands.get(int(guild), [])

    # -- interactions --------------------------------------------------------------------------

    async def callback(self, request: web.Request, body: Any, files: list[UploadedFile], interaction_id: str,
                       token: str) -> Any:
        reply = self.interactions.callback(int(interaction_id), token, body or {}, files)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return reply

    async def followup(self, request: web.Request, body: Any, files: list[UploadedFile], app: str, token: str) -> Any:
        return self.interactions.followup(token, body or {}, files)

    async def get_webhook_message(self, request: web.Request, body: Any, files: Any, app: str, token: str,
                                  message_id: str) -> Any:
        return self.interactions.webhook_message(token, message_id)[1]

    async def edit_webhook_message(self, request: web.Request, body: Any, files: list[UploadedFile], app: str,
                                   token: str, message_id: str) -> Any:
        return self.interactions.edit_webhook_message(token, message_id, body or {}, files)

    async def delete_webhook_message(self, request: web.Request, body: Any, files: Any, app: str, token: str,
                                     message_id: str) -> Any:
        _, message = self.interactions.webhook_message(token, message_id)
        self.world.delete_message(message)
        return web.Response(status=204)

    # -- channels and messages -----------------------------------------------------------------

    async def create_message(self, request: web.Request, body: Any, files: list[UploadedFile], channel_id: str) -> Any:
        world = self.world
        body = body or {}
        channel = world.bot_channel(channel_id, send=True, attach=bool(files))
        limit = TIER_LIMITS[0] if channel.type == Channel.DM else world.upload_limit(channel.guild_id)
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > NONCE_MAX_LENGTH:
            raise invalid_form({"nonce": f"Must be {NONCE_MAX_LENGTH} or fewer in length."})
        if nonce is not None and body.get("enforce_nonce"):
            for message in reversed(world.messages[int(channel_id)]):
                if message.get("nonce") == str(nonce) and message["author"]["id"] == world.bot_user["id"] and \
                        world.clock() - world.created_at[message["id"]] < NONCE_WINDOW:
                    return message
        return world.new_message(int(channel_id), body, files, limit=limit, author=world.bot_user)

    async def get_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                          message_id: str) -> Any:
        self.world.bot_channel(channel_id)
        return self.world.find_message(int(message_id), int(channel_id))

    async def list_messages(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        """Channel history, newest first, with Discord's before/after/limit paging."""
        self.world.bot_channel(channel_id)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = list(self.world.messages[int(channel_id)])
        if "before" in request.query:
            messages = [m for m in messages if int(m["id"]) < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if int(m["id"]) > int(request.query["after"])][:limit]
        return list(reversed(messages))[:limit]

    def _own_message(self, channel_id: str, message_id: str, *, code: int, text: str) -> dict[str, Any]:
        message = self.world.find_message(int(message_id), int(channel_id))
        if message["author"]["id"] != self.world.bot_user["id"]:
            raise DiscordError(403, code, text)
        return message

    async def edit_channel_message(self, request: web.Request, body: Any, files: list[UploadedFile], channel_id: str,
                                   message_id: str) -> Any:
        channel = self.world.bot_channel(channel_id)
        message = self._own_message(channel_id, message_id, code=50005,
                                    text="Cannot edit a message authored by another user")
        return self.world.edit_message(message, body or {}, files, limit=self.world.upload_limit(channel.guild_id))

    async def delete_channel_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                                     message_id: str) -> Any:
        self.world.bot_channel(channel_id)
        # The bot has no Manage Messages: only its own messages.
        message = self._own_message(channel_id, message_id, code=50013, text="Missing Permissions")
        self.world.delete_message(message)
        return web.Response(status=204)

    async def typing(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        self.world.bot_channel(channel_id, send=True)
        self.world.events.publish({"type": "typing", "channel_id": channel_id, "user_id": self.world.bot_user["id"]})
        return web.Response(status=204)

    async def get_channel(self, request: web.Request, body: Any, files: Any, channel_id: str) -> Any:
        channel = self.world.channels.get(int(channel_id))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        if channel.type != Channel.DM:
            self.world.bot_channel(channel_id)
        return self.world.channel_payload(int(channel_id))

    async def create_dm(self, request: web.Request, body: Any, files: Any) -> Any:
        recipient = int((body or {}).get("recipient_id") or 0)
        if recipient not in self.world.users or recipient == self.world.app_id:
            raise DiscordError(400, 50033, "Invalid Recipients")
        return self.world.channel_payload(self.world.dm_channel(recipient))

    async def get_user(self, request: web.Request, body: Any, files: Any, user_id: str) -> Any:
        user = self.world.users.get(int(user_id))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return user

    async def get_guild(self, request: web.Request, body: Any, files: Any, guild_id: str) -> Any:
        guild = self.world.guilds.get(int(guild_id))
        if guild is None or not guild.bot_member:
            raise DiscordError(403, 50001, "Missing Access")
        return self.world.guild_payload(int(guild_id))

    async def get_member(self, request: web.Request, body: Any, files: Any, guild_id: str, user_id: str) -> Any:
        guild = self.world.guilds.get(int(guild_id))
        if guild is None or not guild.bot_member:
            raise DiscordError(403, 50001, "Missing Access")
        if int(user_id) != self.world.app_id and int(user_id) not in guild.members:
            raise DiscordError(404, 10007, "Unknown Member")
        return self.world.member_payload(int(guild_id), int(user_id))

    # -- monetization: SKUs and entitlements ---------------------------------------------------

    def _own_app(self, app: str) -> None:
        if int(app) != self.world.app_id:
            raise DiscordError(403, 50001, "Missing Access")

    async def entitlement_event(self, event: str, entitlement: dict[str, Any]) -> None:
        """ENTITLEMENT_CREATE / UPDATE / DELETE to the bot's gateway, as Discord sends them."""
        await self.interactions.gateway.broadcast(event, dict(entitlement))

    async def list_skus(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        self._own_app(app)
        return list(self.world.skus.values())

    async def list_entitlements(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        """The spec's filters: user_id, sku_ids (comma-separated), before/after/limit, exclude_ended/deleted."""
        self._own_app(app)
        query = request.query

        def flag(name: str, default: bool) -> bool:
            return query[name].lower() in ("1", "true") if name in query else default

        sku_ids = {int(part) for part in query.get("sku_ids", "").split(",") if part.strip()}
        return self.world.list_entitlements(
            user_id=int(query["user_id"]) if "user_id" in query else None, sku_ids=sku_ids or None,
            before=int(query["before"]) if "before" in query else None,
            after=int(query["after"]) if "after" in query else None, limit=int(query.get("limit", 100)),
            exclude_ended=flag("exclude_ended", False), exclude_deleted=flag("exclude_deleted", True))

    async def get_entitlement(self, request: web.Request, body: Any, files: Any, app: str, entitlement: str) -> Any:
        self._own_app(app)
        return self.world.entitlement(entitlement)

    async def create_test_entitlement(self, request: web.Request, body: Any, files: Any, app: str) -> Any:
        """A test entitlement for a user (owner_type 2); guild-owned ones (1) are not modelled."""
        self._own_app(app)
        body = body or {}
        if int(body.get("owner_type") or 0) != 2:
            raise invalid_form({"owner_type": "Only user-owned (2) test entitlements are supported here."})
        entitlement = self.world.grant_entitlement(int(body.get("owner_id") or 0), int(body.get("sku_id") or 0),
                                                   kind=ENTITLEMENT_TEST_MODE_PURCHASE)
        await self.entitlement_event("ENTITLEMENT_CREATE", entitlement)
        return entitlement

    async def delete_test_entitlement(self, request: web.Request, body: Any, files: Any, app: str,
                                      entitlement_id: str) -> Any:
        """Only test entitlements can be deleted through the API (a real purchase is refunded by Discord)."""
        self._own_app(app)
        if self.world.entitlement(entitlement_id)["type"] != ENTITLEMENT_TEST_MODE_PURCHASE:
            raise DiscordError(403, 50001, "Missing Access")
        entitlement = self.world.delete_entitlement(entitlement_id)
        await self.entitlement_event("ENTITLEMENT_DELETE", entitlement)
        return web.Response(status=204)

    async def consume_entitlement(self, request: web.Request, body: Any, files: Any, app: str,
                                  entitlement_id: str) -> Any:
        self._own_app(app)
        entitlement = self.world.consume_entitlement(entitlement_id)
        await self.entitlement_event("ENTITLEMENT_UPDATE", entitlement)
        return web.Response(status=204)
