"""Credits bought inside Discord: entitlement events, the reconcile that catches missed ones, buy buttons.

The gateway may drop an event (a reconnect, the bot being down when someone bought): at ready and every
ENTITLEMENT_RECONCILE_SECONDS the bot lists the application's entitlements and applies those still pending,
so every purchase is credited exactly once (bot/purchases.py keys the credit by entitlement id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.purchases import EntitlementInfo, Outcome

if TYPE_CHECKING:
    from bot.client import VideoBot
    from bot.config import Settings

log = logging.getLogger(__name__)


def buy_view(settings: Settings) -> discord.ui.View | None:
    """Premium buttons (style 6): the CREDIT_PACKS, then the SUBSCRIPTION_SKUS; None when nothing is for sale.

    Discord draws each button from the SKU itself (name, price, "subscribed" state), so a subscriber
    sees their plan rather than an offer to buy it again.
    """
    for_sale = [*settings.credit_pack_map(), *settings.subscription_map()]
    if not for_sale:
        return None
    view = discord.ui.View(timeout=None)
    for sku_id in for_sale[:5]:  # one action row holds five buttons
        view.add_item(discord.ui.Button(sku_id=sku_id))
    return view


def entitlement_info(entitlement: discord.Entitlement, *, deleted: bool | None = None) -> EntitlementInfo:
    ended = entitlement.ends_at is not None and entitlement.ends_at <= datetime.now(UTC)
    return EntitlementInfo(id=entitlement.id, sku_id=entitlement.sku_id, user_id=entitlement.user_id,
                           deleted=entitlement.deleted if deleted is None else deleted,
                           consumed=entitlement.consumed, ended=ended)


class Store(commands.Cog):
    """Entitlement listeners and the periodic reconcile."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.purchases = bot.service.purchases  # the process's one subscriber cache, owned by the service
        self._lock = asyncio.Lock()  # an event and a reconcile handling the same entitlement take turns
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def cog_unload(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- events --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        await self.apply(entitlement)

    @commands.Cog.listener()
    async def on_entitlement_update(self, entitlement: discord.Entitlement) -> None:
        await self.apply(entitlement)

    @commands.Cog.listener()
    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        """A refund (or a removed test entitlement)."""
        await self.apply(entitlement, deleted=True)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Reconcile now (anything bought while we were away), then every few minutes."""
        if not self.purchases.sku_ids:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._reconcile_forever(), name="entitlement-reconcile")
        else:
            self._wake.set()

    async def apply(self, entitlement: discord.Entitlement, *, deleted: bool | None = None) -> Outcome:
        """Credit (or take back) first, then consume: a crash in between leaves it for the reconcile."""
        info = entitlement_info(entitlement, deleted=deleted)
        async with self._lock:
            outcome = await self.purchases.handle(info)
            if outcome in (Outcome.CREDITED, Outcome.ALREADY) and self.purchases.needs_consume(info):
                try:
                    await entitlement.consume()
                except discord.HTTPException as error:
                    log.warning("could not consume entitlement %s (%s %s); the reconcile retries it",
                                entitlement.id, error.status, error.text)
        return outcome

    # -- reconcile -----------------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        interval = self.bot.settings.entitlement_reconcile_seconds
        while True:
            try:
                await self.reconcile()
            except (discord.HTTPException, OSError) as error:
                log.warning("entitlement reconcile failed, retrying in %gs: %s", interval, error)
            except Exception:
                log.exception("entitlement reconcile failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def reconcile(self) -> int:
        """Apply every pack entitlement not yet consumed and refresh the subscriber cache; how many applied."""
        skus = [discord.Object(id=sku_id) for sku_id in self.purchases.sku_ids]
        applied = 0
        subscriptions: list[EntitlementInfo] = []
        async for entitlement in self.bot.entitlements(limit=None, skus=skus, exclude_deleted=True):
            info = entitlement_info(entitlement)
            if info.sku_id in self.purchases.subscriptions:
                subscriptions.append(info)
            elif self.purchases.needs_consume(info):
                await self.apply(entitlement)
                applied += 1
        self.purchases.replace_subscriptions(subscriptions)
        return applied


async def setup(bot: VideoBot) -> None:
    """Load the Store cog."""
    await bot.add_cog(Store(bot))
