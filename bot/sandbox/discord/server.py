"""The loopback Discord: one aiohttp server putting the world, the gateway, the interactions and REST together.

Tests and the sandbox run the real, unmodified discord.py bot against it. It keeps guilds, channels, users,
messages and uploaded files in memory and enforces the Discord rules the bot must live with (3 s ack window,
15 min tokens, content and embed limits, upload limits, nonce de-duplication, permissions, DMs closed), and
can be told to answer chosen routes with 429 or 5xx. Everything it receives is recorded for assertions;
changes are published to subscribers (the web console) and kept in an ordered log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.sandbox.discord.constants import MiB
from bot.sandbox.discord.gateway import Gateway, GatewaySession
from bot.sandbox.discord.interactions import Interactions
from bot.sandbox.discord.persist import WorldStore, rebase_urls
from bot.sandbox.discord.rest import Fault, Recorded, Rest
from bot.sandbox.discord.rules import UploadedFile
from bot.sandbox.discord.world import ENTITLEMENT_TEST_MODE_PURCHASE, Interaction, Payload, World


class LoopbackDiscord(World):
    """The fake Discord server: the world it serves, plus the means to act in it as Discord's users."""

    def __init__(self, *, clock: Callable[[], float] = time.time, bot_name: str = "VideoBot",
                 data_dir: Path | None = None) -> None:
        """`data_dir`: keep the world there across restarts (the sandbox); None keeps it in memory (tests)."""
        super().__init__(clock=clock, bot_name=bot_name)
        self.store = WorldStore(data_dir) if data_dir is not None else None
        self.restored = self.store.attach(self) if self.store is not None else False
        self.port = 0
        self.gateway = Gateway(self, lambda: self.gateway_url)
        self.interactions_api = Interactions(self, self.gateway)
        self.rest = Rest(self, self.interactions_api, lambda: self.gateway_url)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=200 * MiB, middlewares=[self.rest.middleware])
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{id}/{name}", self.rest.attachment)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        rebase_urls(self, self.saved_base_url, self.base_url)
        self.changed()

    async def stop(self) -> None:
        if self.store is not None:
            self.store.flush()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # -- acting as Discord's users -------------------------------------------------------------

    async def invoke(self, command: str, *, user: int, channel: int, options: dict[str, Any] | None = None,
                     attachments: dict[str, UploadedFile] | None = None, context: str | None = None) -> Interaction:
        """Run a slash command (see `Interactions.invoke`)."""
        return await self.interactions_api.invoke(command, user=user, channel=channel, options=options,
                                                  attachments=attachments, context=context)

    async def click(self, message: Payload, custom_id: str, *, user: int,
                    values: list[str] | None = None) -> Interaction:
        """Press a button or pick values in a select (see `Interactions.click`)."""
        return await self.interactions_api.click(message, custom_id, user=user, values=values)

    async def submit_modal(self, custom_id: str, values: dict[str, Any], *, user: int, channel: int) -> Interaction:
        return await self.interactions_api.submit_modal(custom_id, values, user=user, channel=channel)

    async def purchase(self, user: int, sku: int, *, test: bool = False) -> Payload:
        """`user` buys `sku` in the client: a new entitlement, and ENTITLEMENT_CREATE to the bot if connected."""
        entitlement = self.grant_entitlement(user, sku, kind=ENTITLEMENT_TEST_MODE_PURCHASE if test else None)
        await self.rest.entitlement_event("ENTITLEMENT_CREATE", entitlement)
        return entitlement

    async def refund(self, entitlement_id: int | str) -> Payload:
        """Discord refunds a purchase: the entitlement is deleted and ENTITLEMENT_DELETE goes to the bot."""
        entitlement = self.delete_entitlement(entitlement_id)
        await self.rest.entitlement_event("ENTITLEMENT_DELETE", entitlement)
        return entitlement

    async def end_subscription(self, entitlement_id: int | str) -> Payload:
        """A subscription lapses: `ends_at` becomes now and ENTITLEMENT_UPDATE goes to the bot."""
        entitlement = self.end_entitlement(entitlement_id)
        await self.rest.entitlement_event("ENTITLEMENT_UPDATE", entitlement)
        return entitlement

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        await self.gateway.broadcast(event, data)

    async def drop_connections(self, *, resumable: bool = True) -> None:
        await self.gateway.drop_connections(resumable=resumable)

    def inject(self, route: str, *, status: int, times: int = 1, retry_after: float = 1.0,
               method: str = "*") -> None:
        self.rest.inject(route, status=status, times=times, retry_after=retry_after, method=method)

    # -- what tests read -----------------------------------------------------------------------

    @property
    def interactions(self) -> dict[int, Interaction]:
        return self.interactions_api.by_id

    @property
    def modals(self) -> dict[str, Payload]:
        return self.interactions_api.modals

    @property
    def requests(self) -> list[Recorded]:
        return self.rest.requests

    @property
    def faults(self) -> list[Fault]:
        return self.rest.faults

    @property
    def sessions(self) -> dict[str, GatewaySession]:
        return self.gateway.sessions

    @property
    def gateway_log(self) -> list[tuple[str, str]]:
        return self.gateway.log

    @property
    def heartbeats(self) -> int:
        return self.gateway.heartbeats

    @property
    def identified(self) -> asyncio.Event:
        return self.gateway.identified
