"""The scheduler: leases, heartbeats, the step budget, and full loop runs (the transitions: test_runner.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import Settings
from bot.crypto import SecretBox
from bot.poller import Poller, StepBudget
from bot.providers.base import JobContext, ProviderState, StatusResult
from bot.providers.registry import ProviderRegistry
from bot.requests import parse_request
from bot.runner import Delivered, JobRunner
from storage import Job, JobState, LedgerKind, NewJob, Store
from tests.bot.test_runner import Clock, RecordingNotifier, ScriptedProvider, build_runner, make_job, step


@pytest.fixture
def parts(store: Store, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = build_runner(store, tmp_path)
    return Poller(store, runner, runner.settings), provider, notifier, clock


async def test_restart_resumes_own_leases_immediately(store: Store, parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    poller, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now)  # then the process "dies"
    await store.jobs.release_all("w1")  # what Poller.run does first on restart
    assert await step(poller.runner, clock) == [job_id]


async def test_loop_runs_jobs_concurrently_and_survives_a_crashing_step(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(video_dir=tmp_path / "v", poll_time_scale=0.0001, database_path=tmp_path / "db.sqlite3")
    provider = ScriptedProvider()
    notifier = RecordingNotifier()
    calls = {"n": 0}
    original = provider.status

    async def flaky_status(provider_job_id: str, ctx: JobContext) -> StatusResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug in an adapter")
        await original(provider_job_id, ctx)
        return StatusResult(ProviderState.SUCCEEDED, result_url="https://x/v.mp4")

    provider.status = flaky_status  # type: ignore[method-assign]
    runner = JobRunner(store, ProviderRegistry(settings, instances={"scripted": provider}), settings,
                       notifier=notifier, secrets=SecretBox("k" * 32), owner="loop")
    poller = Poller(store, runner, settings)
    ids = [await make_job(store, Clock(__import__("time").time()), price=1) for _ in range(2)]
    poller.start()
    try:
        async with asyncio.timeout(20):
            while len(notifier.delivered) < 2:
                await asyncio.sleep(0.02)
    finally:
        await poller.stop()
    assert sorted(notifier.delivered) == sorted(ids)


def test_step_budget_limits_steps_per_second_and_refills() -> None:

    now = [0.0]
    budget = StepBudget(50.0, clock=lambda: now[0])
    started = 0
    for _ in range(200):  # two seconds in 10 ms ticks, always asking for as much as allowed
        allowed = budget.available()
        budget.spend(allowed)
        started += allowed
        now[0] += 0.01
    assert 90 <= started <= 50 * 2 + budget.capacity  # about the rate, plus at most one burst
    budget.spend(10**6)  # never goes into debt beyond empty
    now[0] += 0.1
    assert budget.available() == 5 and budget.wait() == 0.0


async def test_job_steps_back_off_during_a_command_burst(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    poller, provider, notifier, clock = parts
    for user in range(1, 41):
        request = parse_request("kling", prompt="a fox")
        await store.jobs.create([NewJob(user_id=user, model="kling", provider="scripted",
                                        request_json=request.model_dump_json(), price=1)], now=clock.now)
    settings = poller.settings.model_copy(update={"max_job_steps_per_second": 50.0, "max_parallel_jobs": 100})
    quiet_poller, one_command = (
        Poller(store, JobRunner(store, poller.runner.providers, settings, notifier=notifier, secrets=SecretBox("k" * 32),
                                clock=clock, owner=owner), settings)
        for owner in ("w1", "w2"))
    started: dict[str, int] = {"w1": 0, "w2": 0}
    for p in (quiet_poller, one_command):  # count steps started (a fast step may finish before we look)
        def counting(job: Job, p: Poller = p, spawn=p._spawn) -> None:  # type: ignore[no-untyped-def]
            started[p.owner] += 1
            spawn(job)
        p._spawn = counting  # type: ignore[method-assign]
    for _ in range(4):  # a burst
        quiet_poller.commands_arriving()
    one_command.commands_arriving()  # a single command is not a burst
    await quiet_poller._tick()
    await one_command._tick()
    assert started["w1"] == quiet_poller._busy_budget.capacity == 2  # a fifth of the budget
    assert started["w2"] == one_command._budget.capacity == 10
    for p in (quiet_poller, one_command):
        await asyncio.gather(*p._running, return_exceptions=True)
        await p.runner.close()


class SlowNotifier(RecordingNotifier):
    """A delivery that takes longer than the lease (a large upload, Discord rate-limit waits)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def deliver(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        self.delivered.append(job.id)
        await asyncio.sleep(self.seconds)
        return Delivered(1000 + job.id, 5)


async def test_a_step_outlasting_a_2s_lease_runs_once(store: Store, tmp_path: Path) -> None:
    """The heartbeat keeps the lease: neither this worker nor another claims the running job again."""
    settings = Settings(video_dir=tmp_path / "videos", poll_time_scale=0.0001, lease_seconds=2.0,
                        database_path=tmp_path / "db.sqlite3")
    provider = ScriptedProvider()
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")]
    registry = ProviderRegistry(settings, instances={"scripted": provider})
    notifier = SlowNotifier(5.0)
    workers = [Poller(store, JobRunner(store, registry, settings, notifier=notifier, secrets=SecretBox("k" * 32),
                                       owner=name), settings)
               for name in ("w1", "w2")]
    request = parse_request("kling", prompt="a fox")
    [job] = await store.jobs.create([NewJob(user_id=1, model="kling", provider="scripted",
                                            request_json=request.model_dump_json(), price=10)])
    for worker in workers:
        worker.start()
    try:
        async with asyncio.timeout(30):
            while (current := await store.jobs.get(job.id)).state is not JobState.DELIVERED:  # type: ignore[union-attr]
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a second run would have started long before this
    finally:
        for worker in workers:
            await worker.stop()
    assert notifier.delivered == [job.id]
    assert provider.calls.count("submit") == 1 and provider.calls.count("fetch") == 1
    assert current.delivered_message_id == 1000 + job.id


async def test_delivery_that_keeps_crashing_ends_undelivered(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    """Unexpected errors on a rendered job never refund (it is paid) and never loop holding the lease."""
    poller, provider, notifier, clock = parts
    job_id = await make_job(store, clock)

    async def broken(job, *, pair=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug in delivery")

    notifier.deliver = broken
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")]
    for _ in range(30):
        job = await store.jobs.get(job_id)
        if job.state is JobState.UNDELIVERED:
            break
        clock.now = max(clock.now, job.next_run_at or clock.now)
        jobs = await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now)
        for claimed in jobs:
            await poller._guarded(claimed)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.UNDELIVERED and job.lease_owner is None and job.next_run_at is None
    assert [e.kind for e in await store.ledger.entries_for_job(job_id)] == [LedgerKind.RESERVE, LedgerKind.CAPTURE]
    await step(poller.runner, clock)
    assert notifier.cards == [(job_id, JobState.UNDELIVERED)]  # the card stops showing a live job
