"""List sweeps (bot/sweep.py): what a listing changes in the schedule, and when a sweep happens at all.

The adapters' list endpoints are tested against loopback servers in tests/bot/providers/; here the
provider answers a scripted listing so each rule is seen on its own, over the real store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import Settings
from bot.crypto import SecretBox
from bot.poller import Poller
from bot.providers.base import ErrorKind, ProviderError, ProviderState, StatusResult, SweepResult
from bot.providers.registry import ProviderRegistry
from bot.requests import parse_request
from bot.runner import JobRunner
from bot.sweep import SWEEP_COVER, Sweeper
from storage import JobState, NewJob, Store
from tests.bot.test_runner import Clock, RecordingNotifier, ScriptedProvider, build_runner, step


class ListingProvider(ScriptedProvider):
    """A scripted provider that also lists its tasks: `listing` is what the next sweep reports."""

    def __init__(self) -> None:
        super().__init__()
        self.can_sweep = True
        self.listing: dict[str, StatusResult] = {}
        self.sweep_error: ProviderError | None = None
        self.sweeps: list[float] = []

    async def sweep(self, since: float, *, max_pages: int) -> SweepResult:
        self.sweeps.append(since)
        if self.sweep_error is not None:
            raise self.sweep_error
        return SweepResult(dict(self.listing), since, 1)


@pytest.fixture
def parts(store: Store, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner, _, notifier, clock = build_runner(store, tmp_path)
    provider = ListingProvider()
    runner.providers._instances["scripted"] = provider
    woken: list[int] = []
    sweeper = Sweeper(store, runner.providers, runner.schedule, runner.settings, clock=clock,
                      wake=lambda: woken.append(1))
    return runner, provider, notifier, clock, sweeper, woken


async def submitted(runner: JobRunner, clock: Clock, count: int, *, own_key: bool = False) -> list[int]:
    """`count` jobs (one per user) submitted to the provider, their first looks scheduled."""
    request = parse_request("kling", prompt="a fox")
    ids = []
    for n in range(count):
        [job] = await runner.store.jobs.create(
            [NewJob(user_id=100 + n + (50 if own_key else 0), model="kling", provider="scripted",
                    request_json=request.model_dump_json(), price=0, uses_own_key=own_key)], now=clock.now)
        ids.append(job.id)
    assert sorted(await step(runner, clock)) == sorted(ids)
    return ids


async def task(store: Store, job_id: int) -> str:
    job = await store.jobs.get(job_id)
    assert job is not None and job.provider_job_id is not None
    return job.provider_job_id


async def test_a_sweep_makes_finished_and_started_renders_due_and_defers_the_rest(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock, sweeper, woken = parts
    done, started, queued, unlisted = await submitted(runner, clock, 4)
    before = {job_id: (await store.jobs.get(job_id)) for job_id in (done, started, queued, unlisted)}
    clock.now += 5
    provider.listing = {
        await task(store, done): StatusResult(ProviderState.SUCCEEDED),
        await task(store, started): StatusResult(ProviderState.RUNNING),  # the job still says submitted
        await task(store, queued): StatusResult(ProviderState.QUEUED),
    }
    assert await sweeper.tick() == sweeper.every
    assert provider.sweeps and provider.sweeps[0] < clock.now - 5  # back past the oldest submission
    after = {job_id: (await store.jobs.get(job_id)) for job_id in before}
    assert after[done].next_run_at == clock.now and after[started].next_run_at == clock.now
    assert after[queued].next_run_at == clock.now + SWEEP_COVER * sweeper.every
    assert after[queued].updated_at == clock.now  # its last look, for learning render times
    assert after[unlisted].next_run_at == before[unlisted].next_run_at  # not on the pages: own looks go on
    assert after[done].state is JobState.SUBMITTED  # a sweep schedules, the runner's look transitions
    assert woken
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://x/v.mp4"),
                         StatusResult(ProviderState.RUNNING, progress=10)]
    assert sorted(await step(runner, clock)) == sorted([done, started])
    assert notifier.delivered == [done]
    assert (await store.jobs.get(started)).state is JobState.RUNNING


async def test_progress_far_ahead_of_the_card_gets_one_look(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    ids = await submitted(runner, clock, 3)
    await store.jobs.update(ids[0], state=JobState.RUNNING, progress=10)
    await store.jobs.update(ids[1], state=JobState.RUNNING, progress=10)
    clock.now += 5
    provider.listing = {await task(store, ids[0]): StatusResult(ProviderState.RUNNING, progress=40),
                        await task(store, ids[1]): StatusResult(ProviderState.RUNNING, progress=20),
                        await task(store, ids[2]): StatusResult(ProviderState.QUEUED)}
    await sweeper.tick()
    assert (await store.jobs.get(ids[0])).next_run_at == clock.now
    assert (await store.jobs.get(ids[1])).next_run_at == clock.now + SWEEP_COVER * sweeper.every


async def test_sweeps_wait_for_enough_renders_on_the_operators_account(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    assert runner.settings.sweep_min_jobs == 3
    await submitted(runner, clock, 2)
    await submitted(runner, clock, 2, own_key=True)  # in their users' accounts: a sweep cannot see them
    await sweeper.tick()
    assert provider.sweeps == []
    await submitted(runner, clock, 1)
    await sweeper.tick()
    assert len(provider.sweeps) == 1


async def test_one_worker_sweeps_per_interval(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    other = Sweeper(store, runner.providers, runner.schedule, runner.settings, clock=clock, wake=lambda: None)
    await submitted(runner, clock, 3)
    await sweeper.tick()
    await other.tick()
    assert len(provider.sweeps) == 1
    clock.now += sweeper.every
    await other.tick()
    await sweeper.tick()
    assert len(provider.sweeps) == 2


async def test_a_failing_sweep_backs_off_and_leaves_the_renders_own_looks(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    ids = await submitted(runner, clock, 3)
    before = [(await store.jobs.get(job_id)).next_run_at for job_id in ids]
    provider.sweep_error = ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=60)
    await sweeper.tick()
    assert [(await store.jobs.get(job_id)).next_run_at for job_id in ids] == before
    provider.sweep_error = None
    clock.now += 2 * sweeper.every
    await sweeper.tick()
    assert len(provider.sweeps) == 1  # still backing off (Retry-After: 60 s)
    clock.now += 60
    await sweeper.tick()
    assert len(provider.sweeps) == 2


async def test_a_render_past_the_cap_is_left_to_its_own_look(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    ids = await submitted(runner, clock, 3)
    clock.now += runner.schedule.give_up_after() + 1
    due = [(await store.jobs.get(job_id)).next_run_at for job_id in ids]
    provider.listing = {await task(store, job_id): StatusResult(ProviderState.QUEUED) for job_id in ids}
    await sweeper.tick()
    assert [(await store.jobs.get(job_id)).next_run_at for job_id in ids] == due  # MAX_RENDER_MINUTES applies
    provider.statuses = [StatusResult(ProviderState.RUNNING)] * 3
    await step(runner, clock)
    assert {(await store.jobs.get(job_id)).error_code for job_id in ids} == {"render_timeout"}


async def test_a_leased_render_is_not_deferred(parts, store: Store) -> None:  # type: ignore[no-untyped-def]
    runner, provider, _, clock, sweeper, _ = parts
    ids = await submitted(runner, clock, 3)
    clock.now += 10
    await store.jobs.update(ids[0], next_run_at=clock.now)
    [claimed] = await store.jobs.claim_due("w2", lease_seconds=300, now=clock.now)
    provider.listing = {await task(store, job_id): StatusResult(ProviderState.QUEUED) for job_id in ids}
    await sweeper.tick()
    assert (await store.jobs.get(claimed.id)).next_run_at == clock.now  # its step sets its next look
    assert (await store.jobs.get(ids[1])).next_run_at == clock.now + SWEEP_COVER * sweeper.every


async def test_the_poller_sweeps_beside_its_loop_and_stops_cleanly(store: Store, tmp_path: Path) -> None:
    settings = Settings(video_dir=tmp_path / "v", poll_time_scale=0.001, database_path=tmp_path / "db.sqlite3")
    provider = ListingProvider()
    notifier = RecordingNotifier()
    runner = JobRunner(store, ProviderRegistry(settings, instances={"scripted": provider}), settings,
                       notifier=notifier, secrets=SecretBox("k" * 32), owner="loop")
    poller = Poller(store, runner, settings)
    request = parse_request("kling", prompt="a fox")
    jobs = [job for n in range(3) for job in await store.jobs.create(
        [NewJob(user_id=200 + n, model="kling", provider="scripted", request_json=request.model_dump_json(),
                price=0)])]
    poller.start()
    try:
        async with asyncio.timeout(20):
            while len({job.provider_job_id for job in await store.jobs.sweep_targets()}) < 3:
                await asyncio.sleep(0.01)
            sweeps = len(provider.sweeps)
            while len(provider.sweeps) < sweeps + 3:  # it keeps sweeping on its own
                await asyncio.sleep(0.01)
            provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://x/v.mp4")] * 3
            provider.listing = {task: StatusResult(ProviderState.SUCCEEDED) for _, task in provider.created}
            while len(notifier.delivered) < 3:
                await asyncio.sleep(0.01)
    finally:
        await poller.stop()
    assert sorted(notifier.delivered) == sorted(job.id for job in jobs)
    assert poller._sweep_task is not None and poller._sweep_task.done()
