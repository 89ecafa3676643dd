"""The learning poll schedule: hazard placement, bounds, jitter, learning, hints, the render cap."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest

from bot.config import Settings
from bot.crypto import SecretBox
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.providers.registry import ProviderRegistry
from bot.providers.replicate import ReplicateProvider
from bot.requests import parse_request
from bot.runner import JobRunner
from bot.schedule import (
    CAP_FRACTION,
    JITTER,
    MIN_GAP,
    PROGRESS_SPREAD,
    WEBHOOK_CACHE_SECONDS,
    WEBHOOK_TRUST_SECONDS,
    RenderKey,
    Schedule,
)
from storage import JobState, LedgerKind, NewJob, Store
from tests.bot.providers.fakes import OPENAI_KEY, REPLICATE_TOKEN, FakeProviders
from tests.bot.test_runner import Clock, RecordingNotifier

KEY = RenderKey("replicate", "kwaivgi/kling-v2.0", 5.0, "1280x720")
PRIOR = (120.0, 180.0)


def schedule(scale: float = 1.0, seed: int = 7, **settings: object) -> Schedule:
    return Schedule(Settings(poll_time_scale=scale, **settings), rng=random.Random(seed))  # type: ignore[arg-type]


def looks(sched: Schedule, until: float, key: RenderKey = KEY, prior: tuple[float, float] = PRIOR) -> list[float]:
    """Ages (seconds) at which a job that never finishes is looked at, up to `until`."""
    t, seen = 0.0, []
    while t < until:
        t += sched.next_delay(key, prior, t)
        seen.append(t)
    return seen


async def teach(sched: Schedule, times: list[float], key: RenderKey = KEY, prior: tuple[float, float] = PRIOR) -> None:
    for seconds in times:
        await sched.observe(key, prior, seconds - 1.0, seconds)


async def test_looks_gather_where_renders_finish() -> None:
    sched = schedule()
    rng = random.Random(1)
    await teach(sched, [rng.uniform(400, 440) for _ in range(60)])
    ages = looks(sched, 600)
    before = [t for t in ages if t < 380]
    inside = [t for t in ages if 400 <= t <= 440]
    assert len(inside) > len(before)  # a 40 s window gets more looks than the 380 s before it
    gaps_inside = [b - a for a, b in itertools.pairwise(ages) if 400 <= a <= 440]
    assert max(gaps_inside) < 20  # dense where completions happen


async def test_gap_is_capped_even_far_outside_everything_seen() -> None:
    sched = schedule()
    await teach(sched, [150.0] * 30)
    median = sched.distribution(KEY, PRIOR).quantile(0.5)
    for age in (0.0, 50.0, 300.0, 1000.0, 2500.0):
        gap = sched.gap(KEY, PRIOR, age)
        assert MIN_GAP <= gap <= CAP_FRACTION * max(age, median) + 1e-9
    # a render running 10x longer than ever seen is still looked at every <= half its age (+ jitter)
    ages = looks(sched, 3000)
    late = [(a, b - a) for a, b in itertools.pairwise(ages) if a > 1500]
    assert late and all(gap <= (CAP_FRACTION * a) * (1 + JITTER) + 1e-9 for a, gap in late)


def test_jitter_stays_within_bounds_and_spreads_jobs() -> None:
    sched = schedule(seed=3)
    base = sched.gap(KEY, PRIOR, 130.0)
    delays = [sched.next_delay(KEY, PRIOR, 130.0) for _ in range(500)]
    assert all(base * (1 - JITTER) - 1e-9 <= d <= base * (1 + JITTER) + 1e-9 for d in delays)
    assert max(delays) - min(delays) > base * JITTER  # not lock-step
    assert len({round(d, 6) for d in delays}) > 400


async def test_learning_moves_the_distribution_and_the_looks() -> None:
    sched = schedule()
    prior_median = sched.distribution(KEY, PRIOR).quantile(0.5)
    first_look_before = looks(sched, 1)[0]
    await teach(sched, [50.0 + n % 10 for n in range(40)])  # the model got ~3x faster than its window
    learned = sched.distribution(KEY, PRIOR)
    assert prior_median > 140 and learned.quantile(0.5) < 70
    ages = looks(sched, 70)
    assert ages[0] < first_look_before
    assert any(45 <= t <= 65 for t in ages) and len(ages) <= 4  # a look where renders now finish, few before


async def test_recent_renders_weigh_more_than_old_ones() -> None:
    sched = schedule()
    await teach(sched, [300.0] * 40 + [100.0] * 20)  # a slow period, then the provider sped up
    assert sched.distribution(KEY, PRIOR).quantile(0.5) < 160


async def test_other_models_of_the_provider_teach_a_new_key() -> None:
    sched = schedule()
    other = RenderKey("replicate", "openai/sora-2", 4.0, "1280x720")
    await teach(sched, [0.5 * 390] * 30, key=other, prior=(300.0, 480.0))  # sora runs at half its window
    assert sched.distribution(KEY, PRIOR).quantile(0.5) < 140  # kling's prior median is 150


async def test_observations_persist_across_restarts(store: Store) -> None:
    settings = Settings(poll_time_scale=0.01)
    first = Schedule(settings, store.render_times, rng=random.Random(1))
    for n in range(30):
        await first.observe(KEY, PRIOR, 0.01 * (60 + n % 5), 0.01 * (61 + n % 5))  # wall seconds at scale 0.01
    again = Schedule(settings, store.render_times, rng=random.Random(1))
    assert again.distribution(KEY, PRIOR).quantile(0.5) > 140  # before loading: the prior
    await again.load()
    assert again.distribution(KEY, PRIOR).quantile(0.5) == pytest.approx(
        first.distribution(KEY, PRIOR).quantile(0.5), rel=0.15)
    assert again.distribution(KEY, PRIOR).quantile(0.5) < 80  # stored in model seconds, not wall


async def test_only_the_newest_observations_are_kept(store: Store) -> None:
    store.render_times.keep = 5
    for n in range(12):
        await store.render_times.add(tuple(KEY), n, n + 1, now=0.0)  # type: ignore[arg-type]
    rows = await store.render_times.recent(100)
    assert [low for _, low, _ in rows] == [7, 8, 9, 10, 11]


def test_poll_time_scale_scales_every_prior_and_bound_but_not_provider_hints() -> None:
    fast, slow = schedule(scale=0.01, seed=5), schedule(scale=1.0, seed=5)
    for age in (0.0, 30.0, 125.0, 170.0, 400.0, 2000.0):
        assert fast.next_delay(KEY, PRIOR, age * 0.01) == pytest.approx(slow.next_delay(KEY, PRIOR, age) * 0.01)
    assert fast.give_up_after() == pytest.approx(slow.give_up_after() * 0.01)
    assert fast.next_delay(KEY, PRIOR, 1.25, poll_after=7.5) == 7.5  # Retry-After is never scaled away


def test_progress_estimates_the_remaining_time() -> None:
    sched = schedule()
    # Halfway after 200 s: about 200 s remain, so the next look is far later than the prior suggests.
    plain = sched.gap(KEY, PRIOR, 200.0)
    far = sched.gap(KEY, PRIOR, 200.0, progress=50)
    near = sched.gap(KEY, PRIOR, 30.0, progress=90)  # early, but nearly done: look sooner than planned
    assert far > 2 * plain and far == pytest.approx(CAP_FRACTION * 200)  # 200 s remain: wait (up to the cap)
    assert near < sched.gap(KEY, PRIOR, 30.0)
    # stuck at 99 % long after every render seen: not hammered, at most 4x the plain rate
    assert sched.gap(KEY, PRIOR, 1500.0, progress=99) >= sched.gap(KEY, PRIOR, 1500.0) / 4 - 1e-9


async def test_working_webhooks_mean_few_polls() -> None:
    clock = Clock(1000.0)
    sched = Schedule(Settings(), rng=random.Random(2), clock=clock)
    polled = len(looks(sched, 900))
    await sched.webhook_arrived("replicate")
    nudged = len(looks(sched, 900))
    assert nudged * 3 <= polled
    clock.now += 2 * 3600  # no callback for two hours: back to ordinary polling
    assert len(looks(sched, 900)) == pytest.approx(polled, abs=2)


async def test_webhook_health_is_shared_between_processes(location: str | Path) -> None:
    """BOT_ROLE=gateway receives the callbacks, a separate worker polls: the worker learns through the store."""
    clock = Clock(1000.0)
    gateway_store, worker_store = await Store.open(location), await Store.open(location)  # two connections
    try:
        gateway = Schedule(Settings(), gateway_store.render_times, rng=random.Random(2), clock=clock)
        worker = Schedule(Settings(), worker_store.render_times, rng=random.Random(2), clock=clock)
        await worker.load()
        polled = len(looks(worker, 900))
        await gateway.webhook_arrived("replicate")
        assert gateway.webhooks_work("replicate")
        assert not worker.webhooks_work("replicate")  # its read is fresh: no database query per look
        clock.now += WEBHOOK_CACHE_SECONDS
        for _ in range(100):  # the stale read starts a refresh in the background
            if worker.webhooks_work("replicate"):
                break
            await asyncio.sleep(0.01)
        assert worker.webhooks_work("replicate") and not worker.webhooks_work("openai")
        assert len(looks(worker, 900)) * 3 <= polled
        restarted = Schedule(Settings(), worker_store.render_times, clock=clock)
        await restarted.load()
        assert restarted.webhooks_work("replicate")  # a worker started later knows at once
        arrived = clock.now - WEBHOOK_CACHE_SECONDS
        await worker_store.render_times.webhook_seen("replicate", now=arrived - 500)  # late, older write
        assert (await worker_store.render_times.webhooks_seen())["replicate"] == arrived  # newer one kept
        clock.now += WEBHOOK_TRUST_SECONDS + 1  # silence for longer than we trust: poll again
        await worker.refresh_webhooks()
        assert not worker.webhooks_work("replicate")
    finally:
        await gateway_store.close()
        await worker_store.close()


def test_the_last_look_lands_on_the_cap() -> None:
    sched = schedule(max_render_minutes=10)
    ages = looks(sched, 10_000)
    assert 600.0 in [round(t, 6) for t in ages]  # looked exactly at the cap, not a gap after it


async def test_a_render_running_half_an_hour_is_kept_until_it_finishes(store: Store, fake: FakeProviders,
                                                                        tmp_path: Path) -> None:
    """Against the Replicate fake reporting `processing`: no give-up before MAX_RENDER_MINUTES."""
    settings = Settings(replicate_api_base=f"{fake.base}/replicate", replicate_api_token=REPLICATE_TOKEN,
                        video_dir=tmp_path / "v", provider_timeout_seconds=2.0)
    clock = Clock()
    provider = ReplicateProvider(settings)
    notifier = RecordingNotifier()
    runner = JobRunner(store, ProviderRegistry(settings, instances={"replicate": provider}), settings,
                       notifier=notifier, secrets=SecretBox("k" * 32), clock=clock, owner="w1")
    fake.steps = 10**9  # processing, forever
    request = parse_request("kling", prompt="a fox")
    [job] = await store.jobs.create([NewJob(user_id=1, model="kling", provider="replicate",
                                            request_json=request.model_dump_json(), price=10)], now=clock.now)
    submitted = clock.now
    try:
        polls = 0
        while clock.now - submitted < 35 * 60:  # a ~30-minute Kling render, 10x its typical window
            for claimed in await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now):
                await runner.step(claimed)
                polls += 1
            current = await store.jobs.get(job.id)
            assert current.state in (JobState.SUBMITTED, JobState.RUNNING), current.error_code
            clock.now = current.next_run_at
        assert 10 < polls < 120  # looked at, neither abandoned nor hammered
        assert not fake.requests_to("/cancel")
        while clock.now - submitted < 60 * 60 + 1:
            for claimed in await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now):
                await runner.step(claimed)
            current = await store.jobs.get(job.id)
            if current.state is JobState.FAILED:
                break
            clock.now = current.next_run_at
        assert current.state is JobState.FAILED and current.error_code == "render_timeout"
        assert clock.now - submitted >= 60 * 60  # not a second before the cap
        assert len(fake.requests_to("/cancel", "POST")) == 1  # canceled at the provider, then refunded
        kinds = [e.kind for e in await store.ledger.entries_for_job(job.id)]
        assert kinds == [LedgerKind.RESERVE, LedgerKind.REFUND]
        for row in await store.jobs.claim_outbox("w1", lease_seconds=300, now=clock.now):
            await runner.outbox(row)  # the notice owed with the failure (the outbox)
        assert notifier.endings == [(job.id, "render_timeout")]
    finally:
        await provider.aclose()


class RecordingSchedule(Schedule):
    """The real schedule, noting what the job runner asked it: (age, progress, key, prior, delay given)."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(settings, **kwargs)  # type: ignore[arg-type]
        self.asked: list[tuple[float, int | None, RenderKey, tuple[float, float], float]] = []

    def next_delay(self, key: RenderKey, prior: tuple[float, float], elapsed: float, *,
                   progress: int | None = None, poll_after: float | None = None) -> float:
        delay = super().next_delay(key, prior, elapsed, progress=progress, poll_after=poll_after)
        self.asked.append((elapsed, progress, key, prior, delay))
        return delay


async def test_openai_progress_reaches_the_schedule_and_moves_the_next_look(store: Store, fake: FakeProviders,
                                                                            tmp_path: Path) -> None:
    """Through the real OpenAI adapter against the fake (`in_progress`, progress 50): the look is placed
    by the end the progress implies (about twice the age), not by the distribution alone."""
    settings = Settings(openai_base_url=f"{fake.base}/openai/v1", openai_api_key=OPENAI_KEY,
                        video_dir=tmp_path / "v", provider_timeout_seconds=2.0)
    clock = Clock()
    provider = OpenAIVideosProvider(settings)
    schedule = RecordingSchedule(settings, rng=random.Random(3), clock=clock)
    runner = JobRunner(store, ProviderRegistry(settings, instances={"openai": provider}), settings,
                       notifier=RecordingNotifier(), secrets=SecretBox("k" * 32), clock=clock, owner="w1",
                       schedule=schedule)
    fake.steps = 10**9  # in_progress at 50 %, forever
    request = parse_request("sora", prompt="a fox", duration=4)
    [job] = await store.jobs.create([NewJob(user_id=1, model="sora", provider="openai",
                                            request_json=request.model_dump_json(), price=10)], now=clock.now)
    try:
        for _ in range(30):  # queued (0 %) first, then running at 50 %
            if len([a for a in schedule.asked if a[1] == 50]) >= 2:
                break
            for claimed in await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now):
                await runner.step(claimed)
            current = await store.jobs.get(job.id)
            assert current is not None and current.state in (JobState.SUBMITTED, JobState.RUNNING)
            clock.now = current.next_run_at
    finally:
        await provider.aclose()
    assert current.progress == 50 and len([a for a in schedule.asked if a[1] == 50]) >= 2
    for age, progress, key, prior, delay in [a for a in schedule.asked if a[1] == 50]:
        assert progress == 50 and key.provider == "openai"
        guided, plain = schedule.gap(key, prior, age, progress=50), schedule.gap(key, prior, age)
        assert abs(guided - plain) > 0.2 * plain  # the progress changed the plan ...
        assert guided * (1 - JITTER) - 1e-6 <= delay <= guided * (1 + JITTER) + 1e-6  # ... and the look
        end = 2 * age  # 50 % after `age`
        assert age + delay <= end * (1 + PROGRESS_SPREAD)  # looked at before the implied end's window closes


def test_max_render_minutes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_render_minutes"):
        Settings(max_render_minutes=0)


async def test_store_without_persistence_still_learns() -> None:
    sched = Schedule(Settings(), None)
    await sched.load()
    await teach(sched, [60.0] * 20)
    assert sched.distribution(KEY, PRIOR).quantile(0.5) < 80

