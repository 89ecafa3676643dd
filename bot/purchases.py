"""Credits bought inside Discord: what an entitlement (a purchase, a refund, a subscription) does to the ledger.

Discord delivers purchases as entitlements. A credit pack (a consumable SKU in CREDIT_PACKS) is credited once
per entitlement id, the ledger's idempotency key, and only then consumed: a crash between the two leaves an
unconsumed entitlement that the next reconcile finds, and its credit is a no-op the second time. A refund
(ENTITLEMENT_DELETE) takes the credits back as far as the balance allows and records the rest. A subscription
(SUBSCRIPTION_SKUS) changes the subscriber's daily grant while its entitlement is active.

No discord.py objects here: the cog turns them into `EntitlementInfo`, so this is testable on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from storage.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntitlementInfo:
    """What we need of a Discord entitlement."""

    id: int
    sku_id: int
    user_id: int | None
    deleted: bool = False
    consumed: bool = False
    ended: bool = False  # ends_at has passed (a lapsed subscription)


class Outcome(StrEnum):
    CREDITED = "credited"  # a pack's credits were added now
    ALREADY = "already"  # credited before (a repeated event or a reconcile): consume it if still pending
    REFUNDED = "refunded"
    IGNORED = "ignored"  # not ours to handle (unknown SKU, a guild-owned entitlement)
    SUBSCRIPTION = "subscription"


def purchase_key(entitlement_id: int) -> str:
    return f"purchase:{entitlement_id}"


class Purchases:
    """Packs and subscriptions against the ledger; the subscriber cache feeds the ledger's daily grant."""

    def __init__(self, ledger: Ledger, packs: dict[int, int], subscriptions: dict[int, int],
                 subscriber_daily: dict[int, int]) -> None:
        self.ledger = ledger
        self.packs = packs
        self.subscriptions = subscriptions
        self.subscriber_daily = subscriber_daily  # shared with the ledger's CreditPolicy
        self._active: dict[int, dict[int, int]] = {}  # user id -> {subscription entitlement id: daily grant}

    @property
    def sku_ids(self) -> list[int]:
        return [*self.packs, *self.subscriptions]

    def needs_consume(self, entitlement: EntitlementInfo) -> bool:
        """A pack entitlement still waiting for its consume (after it has been credited)."""
        return entitlement.sku_id in self.packs and not entitlement.consumed and not entitlement.deleted

    async def handle(self, entitlement: EntitlementInfo) -> Outcome:
        """Apply one entitlement as it is now (created, updated, deleted, or listed by a reconcile)."""
        if entitlement.user_id is None:
            return Outcome.IGNORED
        if entitlement.sku_id in self.subscriptions:
            self._subscription(entitlement)
            return Outcome.SUBSCRIPTION
        credits = self.packs.get(entitlement.sku_id)
        if credits is None:
            log.warning("entitlement %s is for SKU %s, which is not in CREDIT_PACKS or SUBSCRIPTION_SKUS",
                        entitlement.id, entitlement.sku_id)
            return Outcome.IGNORED
        if entitlement.deleted:
            return await self.refund(entitlement)
        applied = await self.ledger.credit_purchase(
            entitlement.user_id, credits, key=purchase_key(entitlement.id),
            refund_key=f"purchase-refund:{entitlement.id}",
            reason=f"bought {credits} credits (SKU {entitlement.sku_id})")
        if applied:
            log.info("entitlement %s: credited %d to user %s", entitlement.id, credits, entitlement.user_id)
        return Outcome.CREDITED if applied else Outcome.ALREADY

    async def refund(self, entitlement: EntitlementInfo) -> Outcome:
        assert entitlement.user_id is not None
        result = await self.ledger.take_back_purchase(
            entitlement.user_id, grant_key=purchase_key(entitlement.id), key=f"purchase-refund:{entitlement.id}",
            shortfall_key=f"purchase-shortfall:{entitlement.id}", reason=f"refund of purchase {entitlement.id}")
        if result is not None:
            taken, shortfall = result
            log.warning("entitlement %s refunded: took back %d credits from user %s, %d unrecovered",
                        entitlement.id, taken, entitlement.user_id, shortfall)
        return Outcome.REFUNDED

    def _subscription(self, entitlement: EntitlementInfo) -> None:
        """Keep the subscriber cache current: active (not ended, not deleted) entitlements set the daily grant."""
        assert entitlement.user_id is not None
        user = self._active.setdefault(entitlement.user_id, {})
        if entitlement.deleted or entitlement.ended:
            user.pop(entitlement.id, None)
        else:
            user[entitlement.id] = self.subscriptions[entitlement.sku_id]
        self._publish(entitlement.user_id)

    def replace_subscriptions(self, active: list[EntitlementInfo]) -> None:
        """A reconcile's full list of active subscription entitlements replaces the cache (lapses drop out)."""
        self._active = {}
        for entitlement in active:
            if entitlement.user_id is not None and entitlement.sku_id in self.subscriptions \
                    and not (entitlement.deleted or entitlement.ended):
                self._active.setdefault(entitlement.user_id, {})[entitlement.id] = \
                    self.subscriptions[entitlement.sku_id]
        self.subscriber_daily.clear()
        for user_id in list(self._active):
            self._publish(user_id)

    def _publish(self, user_id: int) -> None:
        grants = self._active.get(user_id) or {}
        if grants:
            self.subscriber_daily[user_id] = max(grants.values())
        else:
            self.subscriber_daily.pop(user_id, None)
            self._active.pop(user_id, None)
