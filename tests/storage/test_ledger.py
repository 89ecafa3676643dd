"""The credit ledger: grants, reservations, settlement exactly once, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import (
    ComparePairing,
    ConcurrencyLimit,
    CreditPolicy,
    InsufficientCredits,
    JobState,
    LedgerKind,
    NewJob,
    Store,
)

DAY1 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
DAY2 = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC).timestamp()


def new_job(user: int, price: int) -> NewJob:
    return NewJob(user_id=user, model="kling", provider="simulated", request_json="{}", price=price)


async def test_new_user_gets_start_balance_and_one_daily_grant_per_utc_day(store: Store) -> None:
    assert await store.ledger.balance(1, now=DAY1) == 120
    assert await store.ledger.balance(1, now=DAY1 + 3600) == 120
    assert await store.ledger.balance(1, now=DAY2) == 140
    kinds = [entry.kind for entry in reversed(await store.ledger.history(1))]
    assert kinds == [LedgerKind.GRANT, LedgerKind.DAILY, LedgerKind.DAILY]
    assert await store.ledger.granted_today(1, now=DAY2) == 20


async def test_reserve_is_atomic_with_job_creation(store: Store) -> None:
    [job] = await store.jobs.create([new_job(1, 30)], now=DAY1)
    assert job.state is JobState.ACCEPTED
    assert await store.ledger.balance(1, now=DAY1) == 90
    entries = await store.ledger.entries_for_job(job.id)
    assert [(e.kind, e.amount) for e in entries] == [(LedgerKind.RESERVE, -30)]


async def test_short_balance_fails_cleanly_and_stores_nothing(store: Store) -> None:
    with pytest.raises(InsufficientCredits) as raised:
        await store.jobs.create([new_job(1, 121)], now=DAY1)
    assert raised.value.balance == 120
    assert await store.jobs.for_user(1) == []
    assert await store.ledger.balance(1, now=DAY1) == 120


async def test_compare_pair_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(InsufficientCredits):
        await store.jobs.create([new_job(1, 100), new_job(1, 40)], now=DAY1)
    assert await store.jobs.for_user(1) == []
    jobs = await store.jobs.create([new_job(1, 60), new_job(1, 40)], now=DAY1)
    assert len(jobs) == 2
    assert await store.ledger.balance(1, now=DAY1) == 20


async def test_compare_pairing_is_stored_with_the_pair(store: Store) -> None:
    """The typed pairing reaches the compares row: blind, which model is A, and both jobs tied to it."""
    jobs = await store.jobs.create([new_job(1, 10), new_job(1, 10)], now=DAY1, compare=ComparePairing(True, "sora"))
    compare_ids = {job.compare_id for job in jobs}
    assert len(compare_ids) == 1 and None not in compare_ids
    compare = await store.jobs.get_compare(compare_ids.pop())
    assert compare is not None and compare.blind and compare.model_in("a") == "sora" and compare.model_in("b") == "kling"
    [plain] = await store.jobs.create([new_job(2, 1)], now=DAY1)
    assert plain.compare_id is None
    with pytest.raises(ValueError, match="slot A"):
        ComparePairing(False, "a")


async def test_concurrency_cap_counts_active_jobs_only(store: Store) -> None:
    first, second = await store.jobs.create([new_job(1, 1), new_job(1, 1)], now=DAY1)
    with pytest.raises(ConcurrencyLimit) as raised:
        await store.jobs.create([new_job(1, 1)], now=DAY1)
    assert raised.value.active == 2 and raised.value.cap == 2
    await store.jobs.update(first.id, state=JobState.CANCELED, now=DAY1)
    await store.jobs.create([new_job(1, 1)], now=DAY1)
    # Another user is not affected by user 1's jobs.
    await store.jobs.create([new_job(2, 1), new_job(2, 1)], now=DAY1)


async def test_failed_job_is_refunded_exactly_once(store: Store) -> None:
    [job] = await store.jobs.create([new_job(1, 50)], now=DAY1)
    await store.jobs.update(job.id, state=JobState.FAILED, error_code="content_policy", now=DAY1)
    assert await store.ledger.balance(1, now=DAY1) == 120
    for target in (JobState.FAILED, JobState.CANCELED, JobState.DOWNLOADED):
        with pytest.raises(Exception, match="not allowed"):
            await store.jobs.update(job.id, state=target, now=DAY1)
    assert await store.ledger.balance(1, now=DAY1) == 120
    kinds = [e.kind for e in await store.ledger.entries_for_job(job.id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.REFUND]


async def test_download_captures_and_never_refunds_afterwards(store: Store) -> None:
    [job] = await store.jobs.create([new_job(1, 50)], now=DAY1)
    await store.jobs.update(job.id, state=JobState.SUBMITTING, now=DAY1)
    await store.jobs.update(job.id, state=JobState.SUBMITTED, provider_job_id="p1", now=DAY1)
    await store.jobs.update(job.id, state=JobState.DOWNLOADED, result_path="/x.mp4", now=DAY1)
    with pytest.raises(Exception, match="not allowed"):
        await store.jobs.update(job.id, state=JobState.FAILED, now=DAY1)
    assert await store.ledger.balance(1, now=DAY1) == 70
    kinds = [e.kind for e in await store.ledger.entries_for_job(job.id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.CAPTURE]
    assert await store.ledger.audit() == {
        "balance_mismatch": 0, "negative_balance": 0, "unsettled_finished_jobs": 0, "duplicate_entries": 0
    }


async def test_own_key_jobs_touch_no_credits(store: Store) -> None:
    [job] = await store.jobs.create([new_job(1, 0)], now=DAY1)
    await store.jobs.update(job.id, state=JobState.FAILED, now=DAY1)
    assert await store.ledger.entries_for_job(job.id) == []
    assert await store.ledger.balance(1, now=DAY1) == 120


async def test_admin_adjust_is_idempotent_and_records_actor(store: Store) -> None:
    applied, balance = await store.ledger.adjust(1, 50, actor_id=99, key="adjust:interaction:1", now=DAY1)
    assert applied and balance == 170
    applied, balance = await store.ledger.adjust(1, 50, actor_id=99, key="adjust:interaction:1", now=DAY1)
    assert not applied and balance == 170
    [entry] = [e for e in await store.ledger.history(1) if e.kind is LedgerKind.ADJUST]
    assert entry.actor_id == 99
    _, balance = await store.ledger.adjust(1, -1000, actor_id=99, key="adjust:interaction:2", now=DAY1)
    assert balance == 0


async def test_many_concurrent_reservations_never_overdraw(location: str | Path) -> None:
    """Hundreds of racing commands: the balance never goes negative and the ledger adds up."""
    policy = CreditPolicy(start_balance=100, daily_grant=0, max_concurrent_jobs=1000)
    store = await Store.open(location, policy)
    outcomes = await asyncio.gather(
        *(store.jobs.create([new_job(user, 7)], now=DAY1) for user in (1, 2, 3) for _ in range(60)),
        *(store.ledger.adjust(3, 5, actor_id=9, key=f"adjust:{n}", now=DAY1) for n in range(20)),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, list)]
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(created) + len(refused) == 180
    # 100 // 7 = 14 jobs for users 1 and 2; user 3's admin grants race its jobs, so it gets 14 to 28.
    by_user = {user: sum(1 for [job] in created if job.user_id == user) for user in (1, 2, 3)}
    assert by_user[1] == by_user[2] == 14
    assert 14 <= by_user[3] <= 28
    assert await store.ledger.balance(1, now=DAY1) == 100 - 14 * 7
    assert await store.ledger.balance(3, now=DAY1) == 200 - by_user[3] * 7
    assert (await store.ledger.audit())["balance_mismatch"] == 0
    await store.close()


async def test_restart_keeps_jobs_and_balances(location: str | Path) -> None:
    store = await Store.open(location)
    [job] = await store.jobs.create([new_job(5, 40)], now=DAY1)
    await store.close()
    reopened = await Store.open(location)
    assert (await reopened.jobs.get(job.id)) == job
    assert await reopened.ledger.balance(5, now=DAY1) == 80
    await reopened.close()
