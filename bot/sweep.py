"""List sweeps: one request to a provider's list endpoint answers for every render in flight there.

Why: per-job polling pays for each look, and on a wide spread of render times no placement of looks
can be both cheap and prompt (bench/bound.py). While several renders run at a provider that lists its
tasks (Replicate, OpenAI), one list request every SWEEP_SECONDS costs a fraction of a look each and
finds every finished render within that interval, whatever the distribution.

A sweep never makes a transition (the runner's own look does, bot/runner.py): it only schedules. A
finished render, a render that started, or one whose progress moved on is made due now, so the
runner looks at it (and the card shows it); a render still running is not looked at for
SWEEP_COVER intervals, since the next sweeps answer for it. If sweeps stop (too few renders, errors,
the process died), those deferrals run out and the schedule's own looks take over. A render the
sweep did not see (on a page it did not read, a user's own key) keeps its own looks. One process per
provider sweeps per interval (claimed in the database), however many workers run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.config import Settings
from bot.providers.base import ProviderError, ProviderState, SweepResult, VideoProvider
from bot.providers.registry import ProviderRegistry
from bot.schedule import Schedule
from storage import JobState, Store, SweepTarget

log = logging.getLogger(__name__)

SWEEP_COVER = 3  # a render seen running waits this many intervals for its own look
SINCE_MARGIN = 60.0  # seconds before the oldest render's submission: the provider's clock may differ
PROGRESS_STEP = 25  # a card's percentage is refreshed (one look) when the list shows it this much further
CLAIM_SLACK = 0.9  # a sweep is claimable 0.9 intervals after the last, so timer jitter never skips one


class Sweeper:
    """Sweeps every provider whose turn it is; `tick` returns how long until the next turn."""

    def __init__(self, store: Store, providers: ProviderRegistry, schedule: Schedule, settings: Settings, *,
                 clock: Callable[[], float], wake: Callable[[], None]) -> None:
        self.store = store
        self.providers = providers
        self.schedule = schedule
        self.settings = settings
        self.clock = clock
        self.wake = wake
        self.every = settings.sweep_seconds * settings.poll_time_scale
        self._failures: dict[str, int] = {}
        self._resume_at: dict[str, float] = {}
        self.requests = 0  # list requests made (pages), for benchmarks and metrics

    @property
    def enabled(self) -> bool:
        return self.every > 0

    async def tick(self) -> float:
        """Sweep each provider with enough renders in flight; seconds until the next tick."""
        if not self.enabled:
            return float("inf")
        by_provider: dict[str, list[SweepTarget]] = {}
        for target in await self.store.jobs.sweep_targets():
            by_provider.setdefault(target.provider, []).append(target)
        for name, targets in by_provider.items():
            provider = self._sweepable(name)
            if provider is None or len(targets) < self.settings.sweep_min_jobs:
                continue
            if self.schedule.webhooks_work(name):  # its webhooks nudge each job: a sweep would add nothing
                continue
            now = self.clock()
            if now < self._resume_at.get(name, -1.0):
                continue
            if not await self.store.render_times.claim_sweep(name, every=CLAIM_SLACK * self.every, now=now):
                continue  # another worker swept it within this interval
            await self.sweep(provider, targets)
        return self.every

    def _sweepable(self, name: str) -> VideoProvider | None:
        try:
            provider = self.providers.get(name)
        except Exception:  # a provider no longer configured: its jobs' own looks say so
            return None
        return provider if provider.can_sweep else None

    async def sweep(self, provider: VideoProvider, targets: list[SweepTarget]) -> None:
        """One listing of `provider`'s recent tasks, applied to `targets` (its renders in flight)."""
        now = self.clock()
        since = min(target.submitted_at for target in targets) - SINCE_MARGIN
        try:
            result = await provider.sweep(since, max_pages=self.settings.sweep_max_pages)
        except ProviderError as error:
            self._failed(provider.name, now, error.retry_after, error.message)
            return
        except Exception as error:  # an adapter bug must not stop the renders' own looks
            self._failed(provider.name, now, None, type(error).__name__)
            return
        if self._failures.pop(provider.name, 0):
            log.info("sweeps of %s work again", provider.name)
        self.requests += result.pages
        await self.apply(result, targets, now)

    async def apply(self, result: SweepResult, targets: list[SweepTarget], now: float) -> None:
        """Make the renders the listing says need a look due now and defer the others."""
        running: list[int] = []
        due: list[int] = []
        cap = self.schedule.give_up_after()
        for target in targets:
            seen = result.states.get(target.provider_job_id)
            if seen is None:
                continue  # not on the pages read: its own looks go on
            if seen.state.finished:
                due.append(target.job_id)
            elif now - target.submitted_at >= cap:
                continue  # its own look applies MAX_RENDER_MINUTES
            elif seen.state is ProviderState.RUNNING and target.state is JobState.SUBMITTED:
                due.append(target.job_id)  # it started: the card should say so
            elif seen.progress is not None and seen.progress >= (target.progress or 0) + PROGRESS_STEP:
                due.append(target.job_id)
            else:
                running.append(target.job_id)
        await self.store.jobs.swept(running=running, due=due, defer_until=now + SWEEP_COVER * self.every, now=now)
        if due:
            self.wake()

    def _failed(self, name: str, now: float, retry_after: float | None, reason: str) -> None:
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        wait = max(retry_after or 0.0, self.every * 2 ** min(failures, 5))
        self._resume_at[name] = now + wait
        if failures == 1:  # once per streak: the renders' own looks carry on meanwhile
            log.warning("sweep of %s failed (%s); its renders are polled one by one, next sweep in %.0f s",
                        name, reason[:200], wait)
