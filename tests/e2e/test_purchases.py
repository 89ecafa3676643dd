"""Credits bought inside Discord, end to end: the real bot, the loopback Discord's SKUs and entitlements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.sandbox.discord import DiscordError
from bot.sandbox.discord.world import SKU_SUBSCRIPTION
from bot.sandbox.run import start_sandbox
from tests.e2e.harness import BotHarness
from tests.e2e.test_sandbox_restart import sandbox_settings, stop

PACK, BIG_PACK, SUB = 1_111_111_111_111_111_11, 2_222_222_222_222_222_22, 3_333_333_333_333_333_33
PACKS = {"credit_packs": f"{PACK}:50,{BIG_PACK}:500", "subscription_skus": f"{SUB}:100"}
pytestmark = pytest.mark.settings(**PACKS)


async def until(condition: Callable[[], Any], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


def skus(harness: BotHarness) -> None:
    harness.server.add_sku("50 credits", sku_id=PACK)
    harness.server.add_sku("500 credits", sku_id=BIG_PACK)
    harness.server.add_sku("Supporter", sku_id=SUB, kind=SKU_SUBSCRIPTION)


async def purchase_rows(harness: BotHarness, user: int) -> list[Any]:
    assert harness.bot is not None
    return [entry for entry in await harness.bot.store.ledger.history(user, limit=50)
            if entry.reason and "bought" in entry.reason]


async def test_purchase_is_credited_once_and_consumed(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    before = await bot.store.ledger.balance(server.alice)
    entitlement = await server.purchase(server.alice, PACK)
    await until(lambda: entitlement["consumed"])
    assert await bot.store.ledger.balance(server.alice) == before + 50
    # Discord sends the same event again (a replay after a resume, a retry): nothing more is credited.
    await server.broadcast("ENTITLEMENT_CREATE", dict(entitlement, consumed=False))
    await server.broadcast("ENTITLEMENT_UPDATE", entitlement)
    await asyncio.sleep(0.3)
    assert await bot.store.ledger.balance(server.alice) == before + 50
    assert len(await purchase_rows(harness, server.alice)) == 1
    consumes = [r for r in server.requests if r.path.endswith(f"/entitlements/{entitlement['id']}/consume")]
    assert len(consumes) >= 1
    assert (await bot.store.ledger.audit())["balance_mismatch"] == 0


async def test_purchase_while_the_bot_is_down_is_credited_at_start_exactly_once(harness: BotHarness) -> None:
    server = harness.server
    skus(harness)
    assert harness.bot is not None
    before = await harness.bot.store.ledger.balance(server.bob)
    await harness.stop()
    entitlement = await server.purchase(server.bob, BIG_PACK)
    bot = await harness.start()
    await until(lambda: entitlement["consumed"])
    assert await bot.store.ledger.balance(server.bob) == before + 500
    bot = await harness.restart()
    await asyncio.sleep(0.3)
    assert await bot.store.ledger.balance(server.bob) == before + 500
    assert len(await purchase_rows(harness, server.bob)) == 1


@pytest.mark.settings(**PACKS, entitlement_reconcile_seconds=0.3)
async def test_consume_failure_keeps_the_credit_and_the_reconcile_retries_it(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    before = await bot.store.ledger.balance(server.alice)
    server.inject(r"/entitlements/\d+/consume$", status=503, times=1, method="POST")
    entitlement = await server.purchase(server.alice, PACK)
    await until(lambda: any(r.path.endswith("/consume") for r in server.requests))
    await until(lambda: entitlement["consumed"])  # the reconcile found it unconsumed and consumed it
    consumes = [r for r in server.requests if r.path.endswith(f"/entitlements/{entitlement['id']}/consume")]
    assert len(consumes) >= 2
    assert await bot.store.ledger.balance(server.alice) == before + 50
    assert len(await purchase_rows(harness, server.alice)) == 1


async def test_refund_takes_the_credits_back(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    before = await bot.store.ledger.balance(server.alice)
    entitlement = await server.purchase(server.alice, PACK)
    await until(lambda: entitlement["consumed"])
    await server.refund(entitlement["id"])
    async with asyncio.timeout(10):
        while await bot.store.ledger.balance(server.alice) != before:
            await asyncio.sleep(0.02)
    # A repeated refund event takes nothing more.
    await server.broadcast("ENTITLEMENT_DELETE", entitlement)
    await asyncio.sleep(0.3)
    assert await bot.store.ledger.balance(server.alice) == before
    history = await bot.store.ledger.history(server.alice, limit=20)
    assert not any(entry.reason and "not recovered" in entry.reason for entry in history)


async def test_refund_after_spending_stops_at_zero_and_records_the_shortfall(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    entitlement = await server.purchase(server.bob, PACK)
    await until(lambda: entitlement["consumed"])
    balance = await bot.store.ledger.balance(server.bob)
    # Bob spends all but 10 credits.
    await bot.store.ledger.adjust(server.bob, -(balance - 10), actor_id=server.admin, key="test-spend")
    await server.refund(entitlement["id"])
    async with asyncio.timeout(10):
        while await bot.store.ledger.balance(server.bob) != 0:
            await asyncio.sleep(0.02)
    history = await bot.store.ledger.history(server.bob, limit=20)
    shortfall = [entry for entry in history if entry.reason and "not recovered" in entry.reason]
    assert len(shortfall) == 1 and "40 credits" in (shortfall[0].reason or "") and shortfall[0].amount == 0
    assert (await bot.store.ledger.audit())["negative_balance"] == 0


async def test_a_refund_before_the_credit_means_no_credit(harness: BotHarness) -> None:
    """Bought and refunded while the bot was down: the reconcile never sees it, a late event credits nothing."""
    server = harness.server
    skus(harness)
    assert harness.bot is not None
    before = await harness.bot.store.ledger.balance(server.bob)
    await harness.stop()
    entitlement = await server.purchase(server.bob, PACK)
    server.delete_entitlement(entitlement["id"])
    bot = await harness.start()
    await server.broadcast("ENTITLEMENT_DELETE", entitlement)
    await asyncio.sleep(0.2)
    await server.broadcast("ENTITLEMENT_CREATE", dict(entitlement, deleted=False))
    await asyncio.sleep(0.3)
    assert await bot.store.ledger.balance(server.bob) == before


async def test_subscription_sets_the_daily_grant_while_active(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    tomorrow, later = time.time() + 86400, time.time() + 2 * 86400
    entitlement = await server.purchase(server.alice, SUB)
    await until(lambda: bot.store.policy.daily_grant_for(server.alice) == 100)
    assert bot.store.policy.daily_grant_for(server.bob) == bot.settings.daily_grant
    await bot.store.ledger.balance(server.alice, now=tomorrow)
    assert await bot.store.ledger.granted_today(server.alice, now=tomorrow) == 100
    await server.end_subscription(entitlement["id"])
    await until(lambda: bot.store.policy.daily_grant_for(server.alice) == bot.settings.daily_grant)
    await bot.store.ledger.balance(server.alice, now=later)
    assert await bot.store.ledger.granted_today(server.alice, now=later) == bot.settings.daily_grant


async def test_subscription_bought_while_down_is_found_at_start(harness: BotHarness) -> None:
    server = harness.server
    skus(harness)
    await harness.stop()
    await server.purchase(server.bob, SUB)
    bot = await harness.start()
    await until(lambda: bot.store.policy.daily_grant_for(server.bob) == 100)


async def test_loopback_entitlement_rules_through_discord_py(harness: BotHarness) -> None:
    """Test entitlements, the list filters and the consume rules, as the real API has them."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    before = await bot.store.ledger.balance(server.bob)
    await bot.create_entitlement(discord.Object(id=PACK), discord.Object(id=server.bob),
                                 discord.EntitlementOwnerType.user)
    test_entitlement = next(e for e in server.entitlements.values() if e["user_id"] == str(server.bob))
    assert test_entitlement["type"] == 4  # TEST_MODE_PURCHASE
    await until(lambda: test_entitlement["consumed"])
    assert await bot.store.ledger.balance(server.bob) == before + 50
    subscription = await server.purchase(server.alice, SUB)
    # Consuming twice, or consuming a subscription, is refused.
    listed = [e async for e in bot.entitlements(limit=None)]
    by_id = {e.id: e for e in listed}
    with pytest.raises(discord.HTTPException) as twice:
        await by_id[int(test_entitlement["id"])].consume()
    assert twice.value.status == 400
    with pytest.raises(discord.HTTPException) as not_consumable:
        await by_id[int(subscription["id"])].consume()
    assert not_consumable.value.status == 400
    # Filters: user, SKU, deleted.
    assert {e.id for e in [e async for e in bot.entitlements(user=discord.Object(id=server.alice))]} == \
        {int(subscription["id"])}
    assert {e.sku_id for e in [e async for e in bot.entitlements(skus=[discord.Object(id=PACK)])]} == {PACK}
    await by_id[int(test_entitlement["id"])].delete()  # a test entitlement can be deleted: ENTITLEMENT_DELETE
    assert test_entitlement["deleted"]
    assert int(test_entitlement["id"]) not in {e.id async for e in bot.entitlements(limit=None)}
    # (discord.py drops exclude_deleted when paging with `after`; ask the REST route directly.)
    every = await bot.http.get_entitlements(bot.application_id, exclude_deleted=False)
    assert int(test_entitlement["id"]) in {int(e["id"]) for e in every}
    server.delete_entitlement(subscription["id"])
    with pytest.raises(DiscordError):  # already deleted
        server.delete_entitlement(subscription["id"])
    async with asyncio.timeout(10):
        while await bot.store.ledger.balance(server.bob) != before:
            await asyncio.sleep(0.02)
    # A real purchase cannot be deleted through the API (Discord refunds it).
    real = await server.purchase(server.bob, BIG_PACK)
    await until(lambda: real["consumed"])
    with pytest.raises(discord.Forbidden):
        await bot.http.delete_entitlement(bot.application_id, real["id"])


def premium_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [component for row in message["components"] for component in row.get("components", [])
            if component.get("style") == 6]


@pytest.mark.settings(**PACKS, start_balance=0, daily_grant=0)
async def test_premium_buttons_on_credits_and_on_an_out_of_credits_refusal(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    skus(harness)
    credits = await harness.invoke("/credits", user=server.alice)
    buttons = premium_buttons(harness.response_message(credits))
    assert [b["sku_id"] for b in buttons] == [str(PACK), str(BIG_PACK), str(SUB)]
    assert all("custom_id" not in b and "label" not in b for b in buttons)
    short = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="y")
    assert "costs 10 credits but you have 0" in harness.ephemeral_text(short)
    assert [b["sku_id"] for b in premium_buttons(harness.response_message(short))] == [str(PACK), str(BIG_PACK),
                                                                                      str(SUB)]
    # Buying from the refusal's button, then trying again, works.
    entitlement = await server.purchase(server.alice, PACK)
    await until(lambda: entitlement["consumed"])
    again = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="y")
    assert not harness.response_message(again)["flags"] & 64
    assert await bot.store.ledger.balance(server.alice) == 40
    bought = await harness.invoke("/credits", user=server.alice)
    assert "bought" in harness.response_message(bought)["embeds"][0]["fields"][-1]["value"]


@pytest.mark.settings(start_balance=0, daily_grant=0)
async def test_no_buttons_without_packs(harness: BotHarness) -> None:
    server = harness.server
    credits = await harness.invoke("/credits", user=server.alice)
    assert harness.response_message(credits)["components"] == []
    short = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="y")
    assert "costs 10 credits but you have 0" in harness.ephemeral_text(short)
    assert "buy" not in harness.ephemeral_text(short).lower()
    assert harness.response_message(short)["components"] == []


async def test_console_buy_creates_a_test_entitlement_that_the_sandbox_bot_credits(tmp_path: Path) -> None:
    """The sandbox sells packs out of the box; a premium button in the console buys one for the pretend user."""
    settings = sandbox_settings(tmp_path / "data")
    server, console, bot, task = await start_sandbox(settings)
    try:
        before = await bot.store.ledger.balance(server.alice)
        credits = await server.invoke("/credits", user=server.alice, channel=server.general)
        await credits.wait_response()
        message = next(m for m in server.messages[server.general] if m["id"] == str(credits.original_message_id))
        [first, *_] = premium_buttons(message)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{console.url}/api/state") as response:
                state = await response.json()
            assert first["sku_id"] in {sku["id"] for sku in state["skus"]}
            async with http.post(f"{console.url}/api/buy",
                                 json={"user_id": str(server.alice), "sku_id": first["sku_id"]}) as response:
                assert response.status == 200
                entitlement = server.entitlements[int((await response.json())["entitlement_id"])]
            async with http.post(f"{console.url}/api/buy",
                                 json={"user_id": str(server.alice), "sku_id": "12345"}) as response:
                assert response.status == 404  # an unknown SKU: a clear error, nothing bought
        assert entitlement["type"] == 4  # a test entitlement, as the developer portal makes
        await until(lambda: entitlement["consumed"])
        assert await bot.store.ledger.balance(server.alice) == before + 100
    finally:
        await stop(server, console, bot, task)
