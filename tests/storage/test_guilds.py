"""Guild settings with their audit, the caps checked in the reserve transaction, and account age (both engines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import (
    ConcurrencyLimit,
    CreditPolicy,
    DailySpendLimit,
    GuildSettings,
    InsufficientCredits,
    JobState,
    LedgerKind,
    MemberDailyCap,
    NewJob,
    Store,
)

DAY1 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
NEXT_DAY = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC).timestamp()
GUILD, OTHER_GUILD, MANAGER = 500, 600, 9


def snowflake(created_at: float, n: int = 1) -> int:
    """A Discord id created at `created_at` (unix seconds)."""
    return ((int(created_at * 1000) - 1_420_070_400_000) << 22) | n


def job(user: int, price: int = 10, guild: int | None = GUILD) -> NewJob:
    return NewJob(user_id=user, model="kling", provider="simulated", request_json="{}", price=price, guild_id=guild)


@pytest.fixture
async def guarded(location: str | Path) -> AsyncIterator[Store]:
    """A store with DAILY_SPEND_LIMIT=25 and NEW_ACCOUNT_MIN_DAYS=7 (and room for 5 jobs per user)."""
    store = await Store.open(location, CreditPolicy(start_balance=100, daily_grant=20, max_concurrent_jobs=5,
                                                    daily_spend_limit=25, new_account_min_days=7))
    try:
        yield store
    finally:
        await store.close()


async def test_settings_default_to_no_restriction_and_every_change_is_audited(store: Store) -> None:
    assert await store.guilds.get(GUILD) == GuildSettings(guild_id=GUILD)
    new, changes = await store.guilds.update(
        GUILD, lambda s: replace(s, allowed_channels=frozenset({7, 3}), member_daily_cap=0), actor_id=MANAGER,
        now=DAY1)
    assert new.allowed_channels == {3, 7} and new.member_daily_cap == 0
    assert [(c.setting, c.old_value, c.new_value) for c in changes] == [
        ("allowed_channels", "[]", "[3, 7]"), ("member_daily_cap", None, "0")]
    assert await store.guilds.get(GUILD) == new
    assert await store.guilds.get(OTHER_GUILD) == GuildSettings(guild_id=OTHER_GUILD)
    same, none = await store.guilds.update(GUILD, lambda s: s, actor_id=MANAGER, now=DAY1 + 1)
    assert same == new and none == []

    def refuse(_: GuildSettings) -> GuildSettings:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await store.guilds.update(GUILD, refuse, actor_id=MANAGER)
    await store.guilds.update(GUILD, lambda s: replace(s, member_daily_cap=None, member_concurrency=2),
                              actor_id=MANAGER + 1, now=DAY1 + 2)
    history = await store.guilds.history(GUILD)
    assert [(h.actor_id, h.setting, h.old_value, h.new_value) for h in history] == [
        (MANAGER + 1, "member_concurrency", None, "2"), (MANAGER + 1, "member_daily_cap", "0", None),
        (MANAGER, "member_daily_cap", None, "0"), (MANAGER, "allowed_channels", "[]", "[3, 7]")]
    assert history[0].created_at == DAY1 + 2


async def test_concurrent_edits_by_managers_lose_nothing(store: Store) -> None:
    await asyncio.gather(*(store.guilds.update(GUILD, lambda s, c=c: replace(s, sora_roles=s.sora_roles | {c}),
                                               actor_id=MANAGER) for c in range(1, 11)))
    assert (await store.guilds.get(GUILD)).sora_roles == set(range(1, 11))
    assert len(await store.guilds.history(GUILD, limit=50)) == 10


async def test_member_concurrency_cap_counts_jobs_in_that_guild_only(store: Store) -> None:
    await store.guilds.update(GUILD, lambda s: replace(s, member_concurrency=1), actor_id=MANAGER)
    [first], _ = await store.jobs.create_with_balance([job(1)], now=DAY1, rules_guild_id=GUILD)
    with pytest.raises(ConcurrencyLimit) as raised:
        await store.jobs.create_with_balance([job(1)], now=DAY1, rules_guild_id=GUILD)
    assert raised.value.guild and raised.value.cap == 1
    await store.jobs.create_with_balance([job(1, guild=OTHER_GUILD)], now=DAY1, rules_guild_id=OTHER_GUILD)
    with pytest.raises(ConcurrencyLimit) as raised:  # the global cap (2) still holds everywhere
        await store.jobs.create_with_balance([job(1, guild=None)], now=DAY1)
    assert not raised.value.guild
    await store.jobs.update(first.id, state=JobState.CANCELED)
    await store.jobs.create_with_balance([job(1)], now=DAY1, rules_guild_id=GUILD)


async def test_member_daily_cap_is_net_of_refunds_per_guild_and_resets_at_utc_midnight(store: Store) -> None:
    await store.guilds.update(GUILD, lambda s: replace(s, member_daily_cap=25), actor_id=MANAGER)
    jobs, _ = await store.jobs.create_with_balance([job(1)], now=DAY1, rules_guild_id=GUILD)
    await store.jobs.create_with_balance([job(1)], now=DAY1, rules_guild_id=GUILD)
    await store.jobs.update(jobs[0].id, state=JobState.SUBMITTING)
    await store.jobs.update(jobs[0].id, state=JobState.SUBMITTED)
    await store.jobs.update(jobs[0].id, state=JobState.DOWNLOADED)  # captured: still spent
    with pytest.raises(MemberDailyCap) as raised:
        await store.jobs.create_with_balance([job(1, price=10)], now=DAY1, rules_guild_id=GUILD)
    assert (raised.value.spent, raised.value.price, raised.value.cap) == (20, 10, 25)
    assert await store.ledger.balance(1, now=DAY1) == 100
    await store.jobs.create_with_balance([job(1, price=5)], now=DAY1, rules_guild_id=GUILD)  # exactly the cap
    await store.jobs.create_with_balance([job(2, price=20)], now=DAY1, rules_guild_id=GUILD)  # another member
    # the other active job is refunded: its credits count no more
    active = [j for j in await store.jobs.for_user(1) if j.state.active and j.price == 10]
    await store.jobs.update(active[0].id, state=JobState.FAILED)
    await store.jobs.update(next(j for j in await store.jobs.for_user(1) if j.price == 5).id, state=JobState.FAILED)
    await store.jobs.create_with_balance([job(1, price=10)], now=DAY1, rules_guild_id=GUILD)
    with pytest.raises(MemberDailyCap):
        await store.jobs.create_with_balance([job(1, price=10)], now=DAY1, rules_guild_id=GUILD)
    # no guild rules outside the guild, and a new UTC day starts from zero
    await store.jobs.create_with_balance([job(3, price=30, guild=None)], now=DAY1)
    [late], _ = await store.jobs.create_with_balance([job(1, price=25)], now=NEXT_DAY, rules_guild_id=GUILD)
    assert late.price == 25


async def test_daily_spend_limit_holds_across_users_under_a_race(guarded: Store) -> None:
    results = await asyncio.gather(*(guarded.jobs.create_with_balance([job(user, guild=None)], now=DAY1)
                                     for user in range(1, 7)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, DailySpendLimit)]
    assert len(refused) == 4 and len(results) - len(refused) == 2
    assert refused[0].limit == 25 and refused[0].spent == 20
    created = [j for user in range(1, 7) for j in await guarded.jobs.for_user(user)]
    assert len(created) == 2
    await guarded.jobs.update(created[0].id, state=JobState.CANCELED)  # refunded: room again
    await guarded.jobs.create_with_balance([job(7, price=15, guild=None)], now=DAY1)
    with pytest.raises(DailySpendLimit):
        await guarded.jobs.create_with_balance([job(8, price=1, guild=None)], now=DAY1)
    await guarded.jobs.create_with_balance([job(8, price=0, guild=None)], now=DAY1)  # own-key jobs cost nothing
    await guarded.jobs.create_with_balance([job(8, price=25, guild=None)], now=NEXT_DAY)


async def test_young_accounts_get_no_grant_until_they_are_old_enough(guarded: Store) -> None:
    young = snowflake(DAY1 - 2 * 86400)
    assert await guarded.ledger.balance(young, now=DAY1) == 0
    assert await guarded.ledger.history(young) == []
    with pytest.raises(InsufficientCredits) as raised:
        await guarded.jobs.create_with_balance([job(young, guild=None)], now=DAY1)
    assert raised.value.balance == 0 and raised.value.grants_from == DAY1 + 5 * 86400
    old_enough = DAY1 + 5 * 86400 + 1
    assert await guarded.ledger.balance(young, now=old_enough) == 120
    kinds = [e.kind for e in reversed(await guarded.ledger.history(young))]
    assert kinds == [LedgerKind.GRANT, LedgerKind.DAILY]
    veteran = snowflake(DAY1 - 8 * 86400, 2)
    assert await guarded.ledger.balance(veteran, now=DAY1) == 120
    with pytest.raises(InsufficientCredits) as raised:
        await guarded.jobs.create_with_balance([job(veteran, price=500, guild=None)], now=DAY1)
    assert raised.value.grants_from is None
    applied, balance = await guarded.ledger.adjust(snowflake(DAY1, 3), 10, actor_id=MANAGER, key="adjust:x",
                                                   now=DAY1)
    assert applied and balance == 10  # an operator's grant still reaches a new account
