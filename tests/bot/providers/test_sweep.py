"""Which providers sweep (list the account's tasks with their states) and which are polled one by one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.config import Settings
from bot.providers.registry import ProviderRegistry
from bot.providers.replicate import ReplicateProvider
from bot.requests import parse_request
from bot.sweep import SWEEP_COVER, Sweeper
from storage import JobState, NewJob, Store
from tests.bot.providers.fakes import FakeProviders
from tests.bot.test_runner import build_runner, step


@pytest.mark.parametrize(("name", "sweeps"), [("replicate", True), ("openai", True), ("kling", False),
                                              ("simulated", False)])
async def test_only_providers_with_a_list_endpoint_sweep(fake: FakeProviders, provider_settings: Settings,
                                                         name: str, sweeps: bool) -> None:
    """Kling documents no list of tasks (PROVIDERS.md) and the simulated provider keeps none: both say so,
    and asking them anyway is a programming error, not a provider failure the poller would retry."""
    registry = ProviderRegistry(provider_settings)
    try:
        provider = registry.get(name)
        assert provider.can_sweep is sweeps
        if sweeps:
            result = await provider.sweep(time.time() - 60, max_pages=1)
            assert result.states == {} and result.pages == 1
        else:
            with pytest.raises(NotImplementedError):
                await provider.sweep(time.time() - 60, max_pages=1)
            assert fake.seen == []
    finally:
        await registry.aclose()


async def test_a_replicate_sweep_over_http_schedules_the_runners_looks(fake: FakeProviders, provider_settings: Settings,
                                                                      store: Store, tmp_path: Path) -> None:
    """The real adapter against the loopback Replicate, under bot/sweep.py and the runner: the ids the list
    reports are the jobs' provider ids, a finished render is looked at (and delivered) at once, a queued one
    waits for the next sweeps, and one list request answered for all three."""
    runner, _, notifier, clock = build_runner(store, tmp_path)
    clock.now = time.time()  # the fake dates predictions by the wall clock
    runner.providers._instances["replicate"] = adapter = ReplicateProvider(provider_settings)
    sweeper = Sweeper(store, runner.providers, runner.schedule, runner.settings, clock=clock, wake=lambda: None)
    request = parse_request("kling", prompt="a fox")
    ids = [job.id for n in range(3) for job in await store.jobs.create(
        [NewJob(user_id=100 + n, model="kling", provider="replicate", request_json=request.model_dump_json(),
                price=0)], now=clock.now)]
    assert sorted(await step(runner, clock)) == sorted(ids)  # submitted to the fake
    done, started, queued = [(await store.jobs.get(job_id)).provider_job_id for job_id in ids]  # type: ignore[union-attr]
    assert len(fake.tasks) == 3 and {done, started, queued} == set(fake.tasks)
    fake.tasks[done].update(status="succeeded", polls=fake.steps)  # its next poll reports the video
    fake.tasks[started].update(status="processing", polls=1)
    clock.now += 5
    try:
        assert await sweeper.tick() == sweeper.every
        assert len(fake.requests_to(r"/predictions(\?|$)", "GET")) == 1 and sweeper.requests == 1
        after = {job_id: await store.jobs.get(job_id) for job_id in ids}
        assert after[ids[0]].next_run_at == clock.now and after[ids[1]].next_run_at == clock.now  # type: ignore[union-attr]
        # Seen queued: not looked at before the next sweeps could have answered for it.
        assert after[ids[2]].next_run_at >= clock.now + SWEEP_COVER * sweeper.every  # type: ignore[union-attr,operator]
        assert after[ids[2]].updated_at == clock.now  # type: ignore[union-attr]
        assert sorted(await step(runner, clock)) == sorted(ids[:2])
        assert notifier.delivered == [ids[0]]
        assert (await store.jobs.get(ids[1])).state is JobState.RUNNING  # type: ignore[union-attr]
    finally:
        await adapter.aclose()
