"""The job state machine and worker leases."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from storage import IllegalTransition, JobState, LeaseLost, NewJob, Store
from storage.models import TERMINAL, TRANSITIONS

NOW = 1_800_000_000.0


def new_job(user: int = 1, price: int = 10) -> NewJob:
    return NewJob(user_id=user, model="sora", provider="simulated", request_json='{"prompt": "x"}', price=price,
                  channel_id=5, guild_id=6, interaction_token="enc-token")


async def test_new_job_is_due_immediately_and_stores_context(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    assert job.next_run_at == NOW
    assert (job.channel_id, job.guild_id, job.interaction_token) == (5, 6, "enc-token")
    assert await store.jobs.next_due_at() == NOW


@pytest.mark.parametrize(("source", "target"), list(itertools.product(JobState, JobState)))
async def test_every_transition_follows_the_table(store: Store, source: JobState, target: JobState) -> None:
    """Walk a job to `source` along legal steps, then check `target` is allowed exactly per the table."""
    path = {
        JobState.ACCEPTED: [],
        JobState.SUBMITTING: [JobState.SUBMITTING],
        JobState.SUBMITTED: [JobState.SUBMITTING, JobState.SUBMITTED],
        JobState.RUNNING: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING],
        JobState.DOWNLOADED: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADED],
        JobState.DELIVERED: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADED, JobState.DELIVERED],
        JobState.UNDELIVERED: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADED, JobState.UNDELIVERED],
        JobState.FAILED: [JobState.FAILED],
        JobState.CANCELED: [JobState.CANCELED],
    }[source]
    [job] = await store.jobs.create([new_job()], now=NOW)
    for step in path:
        job = await store.jobs.update(job.id, state=step, now=NOW)
    assert job.state is source
    allowed = target in TRANSITIONS[source] or (target == source and not source.terminal)
    if allowed:
        updated = await store.jobs.update(job.id, state=target, now=NOW)
        assert updated.state is target
        if target in TERMINAL:
            assert updated.next_run_at is None and updated.finished_at == NOW
    else:
        with pytest.raises(IllegalTransition):
            await store.jobs.update(job.id, state=target, now=NOW)
        assert (await store.jobs.get(job.id)).state is source  # type: ignore[union-attr]


async def test_claim_leases_due_jobs_once(store: Store) -> None:
    a, b = await store.jobs.create([new_job(), new_job()], now=NOW)
    await store.jobs.update(b.id, next_run_at=NOW + 60, now=NOW)
    claimed = await store.jobs.claim_due("w1", lease_seconds=30, now=NOW)
    assert [job.id for job in claimed] == [a.id]
    assert await store.jobs.claim_due("w2", lease_seconds=30, now=NOW) == []
    # The leased job is due again when its lease runs out; the other one at its own time.
    assert await store.jobs.next_due_at() == NOW + 30


async def test_crashed_workers_lease_is_taken_over(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    [mine] = await store.jobs.claim_due("dead", lease_seconds=30, now=NOW)
    [taken] = await store.jobs.claim_due("alive", lease_seconds=30, now=NOW + 31)
    assert taken.id == mine.id == job.id and taken.lease_owner == "alive"
    with pytest.raises(LeaseLost):
        await store.jobs.update(job.id, owner="dead", state=JobState.SUBMITTING, now=NOW + 32)
    await store.jobs.update(job.id, owner="alive", state=JobState.SUBMITTING, request_key="k", now=NOW + 32)
    updated = await store.jobs.update(job.id, owner="alive", state=JobState.SUBMITTED, provider_job_id="p",
                                      next_run_at=NOW + 90, release=True, now=NOW + 32)
    assert updated.lease_owner is None and updated.provider_job_id == "p"


async def test_racing_workers_never_claim_the_same_job(store: Store) -> None:
    jobs = []
    for user in range(40):
        jobs += await store.jobs.create([new_job(user, 1)], now=NOW)
    results = await asyncio.gather(
        *(store.jobs.claim_due(f"w{n}", lease_seconds=60, limit=3, now=NOW) for n in range(20))
    )
    claimed = [job.id for batch in results for job in batch]
    assert sorted(claimed) == sorted(job.id for job in jobs)


async def test_release_all_frees_a_workers_leases(store: Store) -> None:
    await store.jobs.create([new_job(), new_job()], now=NOW)
    await store.jobs.claim_due("w1", lease_seconds=300, now=NOW)
    assert await store.jobs.release_all("w1") == 2
    assert len(await store.jobs.claim_due("w2", lease_seconds=30, now=NOW)) == 2


async def test_update_rejects_identity_and_money_columns(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    with pytest.raises(ValueError, match="cannot change"):
        await store.jobs.update(job.id, price=0)
    with pytest.raises(ValueError, match="cannot change"):
        await store.jobs.update(job.id, user_id=2)


async def test_for_user_lists_active_first(store: Store) -> None:
    old, new = await store.jobs.create([new_job(), new_job()], now=NOW)
    await store.jobs.update(new.id, state=JobState.CANCELED, now=NOW)
    listed = await store.jobs.for_user(1)
    assert [job.id for job in listed] == [old.id, new.id]
    assert await store.jobs.active_count(1) == 1
