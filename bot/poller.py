"""The job scheduler: one background loop that decides when each job takes its next step.

Shape (RoboDanny's timer loop, adapted): read when the soonest job is due, sleep until then or
until `wake()`, then *claim* due jobs and owed notices with a lease (nothing is deleted, so a crash
loses nothing), keep each lease alive while its step runs, and hand the step to the one owner of a
job's life, `bot.runner.JobRunner` (submit, poll, download, deliver, fail, the outbox). Steps are
bounded by `max_parallel_jobs` and a step budget, which backs off while slash commands arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from bot import logcontext
from bot.config import Settings
from bot.providers.registry import provider_class

# Re-exported: the Discord side and older callers import these from here.
from bot.runner import (
    Delivered as Delivered,
    DeliveryRetry as DeliveryRetry,
    JobRunner,
    Notifier as Notifier,
    retry_delay as retry_delay,
)
from bot.sweep import Sweeper
from storage import IllegalTransition, Job, JobNotFound, JobState, LeaseLost, OutboxRow, Store

log = logging.getLogger(__name__)

MAX_SLEEP = 3600.0
COMMAND_QUIET_SECONDS = 0.25  # in a burst of commands, job steps run at a fifth of their budget this long
COMMAND_BURST = 4  # this many commands within COMMAND_QUIET_SECONDS is a burst


class StepBudget:
    """A token bucket: at most `rate` job steps (mostly status polls) start per second.

    Why: with thousands of renders in flight the poller alone could take the whole event loop,
    and slash commands (which must be answered within 3 s) share that loop and its one SQLite
    writer. Past the budget, due looks wait their turn (oldest due first) instead.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 5)  # a fifth of a second's worth may start at once
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def available(self) -> int:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return int(self.tokens)

    def spend(self, steps: int) -> None:
        self.tokens = max(self.tokens - steps, 0.0)

    def wait(self) -> float:
        """Seconds until one more step may start."""
        return max(1.0 - self.tokens, 0.0) / self.rate


class Poller:
    """Runs due steps; many run concurrently, bounded by `max_parallel_jobs` and the step budget.

    The runner's owner id and clock are the poller's too: the leases it takes are the ones the
    runner's writes check.
    """

    def __init__(self, store: Store, runner: JobRunner, settings: Settings) -> None:
        self.store = store
        self.runner = runner
        self.settings = settings
        self.clock = runner.clock
        self.owner = runner.owner
        self.schedule = runner.schedule
        runner.on_wake(self.wake)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_parallel_jobs)
        self._budget = StepBudget(settings.max_job_steps_per_second)
        # While slash commands arrive, job steps slow to a fifth of the budget (never to zero).
        self._busy_budget = StepBudget(settings.max_job_steps_per_second / 5)
        self._commands_until = 0.0
        self._recent_commands: deque[float] = deque(maxlen=COMMAND_BURST)
        self._running: set[asyncio.Task[None]] = set()
        self._active: set[int] = set()  # job ids this process is running a step of (never claimed again)
        self._loop_task: asyncio.Task[None] | None = None
        self.sweeper = Sweeper(store, runner.providers, self.schedule, settings, clock=self.clock, wake=self.wake)
        self._sweep_task: asyncio.Task[None] | None = None
        self.iterations = 0

    # -- loop ----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (a job was created or a webhook arrived): re-read the schedule now."""
        self._wake.set()

    async def nudge(self, provider: str, payload: dict[str, Any]) -> bool:
        """A verified provider callback arrived: make its job due now. Whether a live job was woken.

        Only a wake-up: the next step asks the provider itself (polling stays the source of truth).
        ValueError (a reason fit for the caller's 400) when the payload names no provider job.
        """
        provider_job_ids = provider_class(provider).callback_job_ids(payload)
        await self.schedule.webhook_arrived(provider)  # verified: its jobs need few polls now
        for provider_job_id in provider_job_ids:
            job = await self.store.jobs.by_provider_job(provider, provider_job_id)
            if job is not None and job.state in (JobState.SUBMITTED, JobState.RUNNING):
                await self.store.jobs.update(job.id, next_run_at=time.time())  # only "due now": no transition
                self.wake()
                return True
        return False

    def commands_arriving(self) -> None:
        """A slash command or button arrived; in a burst, job steps back off briefly (answers are due in 3 s)."""
        now = time.monotonic()
        self._recent_commands.append(now)
        if len(self._recent_commands) == COMMAND_BURST and now - self._recent_commands[0] < COMMAND_QUIET_SECONDS:
            self._commands_until = now + COMMAND_QUIET_SECONDS

    def start(self) -> asyncio.Task[None]:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self.run(), name="job-poller")
        if self.sweeper.enabled and (self._sweep_task is None or self._sweep_task.done()):
            self._sweep_task = asyncio.create_task(self._sweep_loop(), name="job-sweeps")
        return self._loop_task

    async def stop(self) -> None:
        for loop_task in (self._loop_task, self._sweep_task):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.jobs.release_all(self.owner)
        await self.runner.close()

    async def run(self) -> None:
        """Forever: claim what is due, otherwise sleep until the soonest job or a wake-up."""
        # Leases held by this worker's previous life are ours to resume now, not after they expire.
        await self.store.jobs.release_all(self.owner)
        await self.schedule.load()
        while True:
            self._wake.clear()  # clear before reading: a wake-up during the read is not lost
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poller iteration failed; continuing")
                await asyncio.sleep(1.0)

    async def _sweep_loop(self) -> None:
        """List sweeps (bot/sweep.py) beside the loop: a slow list request never delays due steps."""
        while True:
            try:
                wait = await self.sweeper.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; continuing")
                wait = self.sweeper.every
            await asyncio.sleep(wait)

    async def _tick(self) -> None:
        self.iterations += 1
        free = self.settings.max_parallel_jobs - len(self._running)
        allowed = self._budget.available()
        busy = self._busy_budget.available()
        quiet = time.monotonic() < self._commands_until
        if quiet:
            allowed = min(allowed, busy)
        if free > 0 and allowed <= 0:
            # over budget: what is due waits its turn
            await asyncio.sleep(min(max(self._budget.wait(), self._busy_budget.wait() if quiet else 0.0, 0.001),
                                    COMMAND_QUIET_SECONDS))
            return
        if free > 0:
            jobs = await self.store.jobs.claim_due(self.owner, lease_seconds=self.settings.lease_seconds,
                                                   limit=min(free, allowed), now=self.clock(),
                                                   exclude=sorted(self._active))
            self._budget.spend(len(jobs))
            self._busy_budget.spend(len(jobs))
            for job in jobs:
                self._spawn(job)
            rows = await self.store.jobs.claim_outbox(self.owner, lease_seconds=self.settings.lease_seconds,
                                                      limit=max(free - len(jobs), 1), now=self.clock())
            for row in rows:
                self._spawn_task(self._guarded_outbox(row), f"outbox-{row.id}")
            if jobs or rows:
                return
            due = await self.store.jobs.next_due_at()
            wait = MAX_SLEEP if due is None else min(max(due - self.clock(), 0.0), MAX_SLEEP)
        else:
            wait = MAX_SLEEP  # a finishing task wakes us
        if wait > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives as the wake-up
            # completes, and stop() would then wait forever for this loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _spawn(self, job: Job) -> None:
        self._spawn_task(self._guarded(job), f"job-{job.id}")

    def _spawn_task(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._running.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._running.discard(finished)
            self._wake.set()

        task.add_done_callback(done)

    async def _guarded(self, job: Job) -> None:
        logcontext.bind(job_id=job.id, user_id=job.user_id, interaction_id=job.interaction_id, guild_id=job.guild_id)
        async with self._slots:
            self._active.add(job.id)
            step = asyncio.create_task(self.runner.step(job), name=f"job-{job.id}-step")
            beat = asyncio.create_task(self._heartbeat(job.id, step), name=f"job-{job.id}-lease")
            try:
                await step
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being stopped
                log.warning("job %s: lease lost to another worker; step aborted", job.id)
            except (LeaseLost, IllegalTransition, JobNotFound) as error:
                log.info("job %s changed under us (%s); dropping this step", job.id, error)
            except Exception:
                log.exception("job %s: unexpected error; will retry", job.id)
                await self.runner.step_crashed(job)
            finally:
                beat.cancel()
                self._active.discard(job.id)

    async def _heartbeat(self, job_id: int, step: asyncio.Task[None]) -> None:
        """Renew the lease every lease/3 while the step runs; abort the step if another worker took it."""
        every = self.settings.lease_seconds / 3
        while not step.done():
            await asyncio.sleep(every)
            try:
                held = await self.store.jobs.renew_lease(job_id, self.owner, lease_seconds=self.settings.lease_seconds,
                                                         now=self.clock())
            except Exception:
                log.warning("job %s: lease renewal failed; trying again", job_id, exc_info=True)
                continue
            if held == "lost":
                step.cancel()
                return
            if held == "released":  # the step gave it back (or a cancel ended the job): nothing to renew
                return

    async def _guarded_outbox(self, row: OutboxRow) -> None:
        async with self._slots:
            try:
                await self.runner.outbox(row)
            except LeaseLost:
                log.info("outbox row %s taken over by another worker", row.id)
            except Exception:
                log.exception("outbox row %s: unexpected error; will retry", row.id)
                await self.runner.outbox_retry(row, "internal error")
