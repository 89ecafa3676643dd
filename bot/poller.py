"""The job poller: one background loop that moves every job through its life.

Shape (RoboDanny's timer loop, adapted): read when the soonest job is due, sleep until then or
until `wake()`, then *claim* due jobs with a lease (nothing is deleted, so a crash loses nothing)
and advance each one step: submit, poll, download, deliver. When to look at a running render is
asked of one object, `bot.schedule.Schedule`, which places looks by the hazard of the render times
it has observed (seeded with the model's typical wait); provider hints (`Retry-After`, progress,
webhooks) are always honoured. A render still running after `MAX_RENDER_MINUTES` is canceled at
the provider and refunded; before that it is never given up while the provider reports it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from bot import images, logcontext, retention
from bot.config import Settings, default_worker_id
from bot.crypto import SecretBox
from bot.faults import crash_point
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState, StatusResult, VideoProvider
from bot.providers.registry import ProviderRegistry, provider_class
from bot.requests import AnyRequest, request_from_json
from bot.schedule import RenderKey, Schedule
from storage import IllegalTransition, Job, JobNotFound, JobState, LeaseLost, OutboxRow, Store

log = logging.getLogger(__name__)

MAX_SLEEP = 3600.0
MAX_RETRIES = 8  # consecutive retryable errors before a job is given up (and refunded)
MAX_DELIVERY_ATTEMPTS = 6
MAX_NOTICE_ATTEMPTS = 8  # an outbox row is given up (logged, kept) after this many failed deliveries
MAX_VIDEO_BYTES = 512 * 1024 * 1024
COMMAND_QUIET_SECONDS = 0.25  # in a burst of commands, job steps run at a fifth of their budget this long
COMMAND_BURST = 4  # this many commands within COMMAND_QUIET_SECONDS is a burst


@dataclass(frozen=True)
class Delivered:
    """Where a finished job was posted; `message_id` None means no route worked."""

    message_id: int | None
    channel_id: int | None = None
    note: str | None = None
    waiting: bool = False  # a /compare half waits for its partner, which delivers both


class DeliveryRetry(Exception):
    """Discord is unavailable for now; try delivering again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Notifier(Protocol):
    """The Discord side of a job (bot/delivery.py); the poller itself knows nothing of Discord."""

    async def deliver(self, job: Job) -> Delivered: ...

    async def progress(self, job: Job, status: StatusResult) -> bool: ...

    async def ended(self, job: Job, *, nonce: str, skip_followup: bool = False,
                    on_route: Callable[[str], Awaitable[None]] | None = None) -> int | None:
        """Show the end on the card and post the notice; the posted message id. DeliveryRetry: later."""
        ...

    async def card(self, job: Job) -> None:
        """Show the job's state on the command's answer. DeliveryRetry: try again later."""
        ...

    async def confirm_ack(self, job: Job) -> bool:
        """Whether the command was answered although no acknowledgement was recorded."""
        ...


def new_request_key(job_id: int) -> str:
    """A submit key unique per install: the job id alone repeats after a database reset or a move."""
    return f"j{job_id}-{secrets.token_hex(8)}"


def retry_delay(attempts: int, scale: float, hint: float | None) -> float:
    """Exponential backoff for retryable errors; a provider's hint wins when it asks for longer."""
    backoff = min(2.0 * 2**attempts, 300.0) * scale
    return max(backoff, hint or 0.0)


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
    """Advances due jobs; many run concurrently, bounded by `max_parallel_jobs` and the step budget."""

    def __init__(
        self,
        store: Store,
        providers: ProviderRegistry,
        settings: Settings,
        *,
        notifier: Notifier,
        secrets: SecretBox,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        http: httpx.AsyncClient | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.settings = settings
        self.notifier = notifier
        self.secrets = secrets
        self.clock = clock
        self.owner = owner or settings.worker_id or default_worker_id()
        self.scale = settings.poll_time_scale
        # When to look next; benchmarks swap in fixed-interval schedules as baselines.
        self.schedule = schedule or Schedule(settings, store.render_times, clock=clock)
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(20.0), limits=httpx.Limits(max_connections=10))
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
        self.schedule.webhook_arrived(provider)  # verified: its jobs need few polls now
        for provider_job_id in provider_job_ids:
            job = await self.store.jobs.by_provider_job(provider, provider_job_id)
            if job is not None and job.state in (JobState.SUBMITTED, JobState.RUNNING):
                await self.store.jobs.update(job.id, next_run_at=time.time())
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
        return self._loop_task

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.jobs.release_all(self.owner)
        await self._http.aclose()

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
            step = asyncio.create_task(self.advance(job), name=f"job-{job.id}-step")
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
                await self._retry_later(job, ProviderError(ErrorKind.TRANSIENT, "internal error"), code="internal")
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

    # -- one step of one job --------------------------------------------------------------------

    async def advance(self, job: Job) -> None:
        """Move a claimed job one step along its life."""
        request = request_from_json(job.model, job.request_json)
        provider = self.providers.get(job.provider)
        if job.state in (JobState.ACCEPTED, JobState.SUBMITTING):
            await self._submit(job, request, provider)
        elif job.state in (JobState.SUBMITTED, JobState.RUNNING):
            await self._poll(job, request, provider)
        elif job.state in (JobState.DOWNLOADED, JobState.UNDELIVERED):
            await self._deliver(job)
        elif job.state is JobState.CANCELED and job.request_key and not job.provider_job_id:
            await self._cancel_orphan(job, request, provider)  # canceled during submission
        else:  # terminal: nothing due; clear a stray schedule
            await self.store.jobs.update(job.id, owner=self.owner, next_run_at=None, release=True)

    async def _hold(self, job: Job) -> None:
        """Right before a side effect (submit, post): still ours? Raises LeaseLost (the step is dropped)."""
        await self.store.jobs.hold_lease(job.id, self.owner, lease_seconds=self.settings.lease_seconds,
                                         now=self.clock())

    async def _context(self, job: Job, request: AnyRequest, *, fetch_reference: bool = True) -> JobContext:
        api_key = None
        if job.uses_own_key:
            stored = await self.store.keys.get(job.user_id, "openai")
            if stored is None:
                raise ProviderError(ErrorKind.AUTH, "your OpenAI key was removed before the job started")
            api_key = SecretStr(self.secrets.decrypt(stored[0]))
        if job.reference_url:
            path = self.reference_path(job.id)
            if fetch_reference:
                path = await self._reference_image(job, request)
            if path.exists():
                request = request.model_copy(update={"reference_image": str(path)})
        return JobContext(job_id=job.id, request=request, api_key=api_key, request_key=job.request_key,
                          submitted_since=job.submitted_at)

    def reference_path(self, job_id: int) -> Path:
        return self.settings.video_dir / "refs" / f"job{job_id}.png"

    async def _reference_image(self, job: Job, request: AnyRequest) -> Path:
        dest = self.reference_path(job.id)
        if dest.exists():
            return dest
        url = job.reference_url or ""
        refs_dir = (self.settings.video_dir / "refs").resolve()
        if url.startswith("file://"):  # a rerun reuses the parent's fitted image
            source = Path(urlsplit(url).path).resolve()
            if not source.is_relative_to(refs_dir) or not source.exists():
                raise images.ImageError("The reference image of the original job is no longer available.")
            data = await asyncio.to_thread(source.read_bytes)
        else:
            hosts = {h.strip().lower() for h in self.settings.reference_image_hosts.split(",") if h.strip()}
            await images.check_url(url, hosts, allow_private=self.settings.reference_image_allow_private)
            data = await images.download(url, client=self._http, max_bytes=self.settings.reference_image_max_bytes)
        return await images.fit_image_async(data, request.size, dest)

    async def _submit(self, job: Job, request: AnyRequest, provider: VideoProvider) -> None:
        """Submit exactly once: record the intent (SUBMITTING, a fresh request key) before the call; a job
        found in SUBMITTING may already be at the provider, so look it up there before submitting again."""
        try:
            if job.state is JobState.ACCEPTED:
                await self._hold(job)
                now = self.clock()
                job = await self.store.jobs.update(job.id, owner=self.owner, state=JobState.SUBMITTING,
                                                   request_key=job.request_key or new_request_key(job.id),
                                                   submitted_at=now, now=now)
                crash_point("after_intent")
                ctx = await self._context(job, request)
            else:
                ctx = await self._context(job, request)
                assert job.request_key is not None
                found = await self._found(job, ctx, provider)
                if found is not None:
                    log.info("job %s: found its task %s at %s; not submitting again", job.id, found, provider.name)
                    await self._record_submitted(job, request, provider, found)
                    return
            await self._hold(job)
            provider_job_id = await provider.submit(ctx)
        except images.ImageError as error:
            await self._fail(job, "invalid_image", error.message)
            return
        except ProviderError as error:
            await self._provider_error(job, error)
            return
        crash_point("after_submit")
        await self._record_submitted(job, request, provider, provider_job_id)

    async def _found(self, job: Job, ctx: JobContext, provider: VideoProvider) -> str | None:
        """The task an earlier try created, if any; duplicates (two tries got through) are canceled."""
        assert job.request_key is not None
        mine = []
        for provider_job_id in await provider.find(job.request_key, ctx):
            owner = await self.store.jobs.by_provider_job(provider.name, provider_job_id)
            if owner is None or owner.id == job.id:  # never adopt another job's task
                mine.append(provider_job_id)
        if not mine:
            return None
        for duplicate in mine[1:]:
            stopped = False
            with contextlib.suppress(ProviderError):
                stopped = await provider.cancel(duplicate, ctx)
            log.warning("job %s: duplicate task %s at %s %s", job.id, duplicate, provider.name,
                        "canceled" if stopped else "could not be canceled")
        return mine[0]

    async def _record_submitted(self, job: Job, request: AnyRequest, provider: VideoProvider,
                                provider_job_id: str) -> None:
        now = self.clock()
        first = self.schedule.first_delay(self._render_key(provider, request), provider.expected_seconds(request))
        try:
            await self.store.jobs.update(
                job.id, owner=self.owner, state=JobState.SUBMITTED, provider_job_id=provider_job_id,
                provider_model=provider.model_id(request), submitted_at=now, attempts=0,
                error_code=None, error_message=None, next_run_at=now + first, release=True, now=now,
            )
        except (LeaseLost, IllegalTransition):
            current = await self.store.jobs.get(job.id)
            if current is None or current.state is not JobState.CANCELED:
                raise
            # Canceled while we were submitting: stop the task now that its id is known.
            await self._stop_canceled(current, request, provider, provider_job_id)
            return
        log.info("job %s submitted to %s as %s", job.id, provider.name, provider_job_id)

    async def _stop_canceled(self, job: Job, request: AnyRequest, provider: VideoProvider,
                             provider_job_id: str) -> None:
        stopped = False
        with contextlib.suppress(ProviderError):
            stopped = await provider.cancel(provider_job_id, JobContext(job_id=job.id, request=request))
        log.info("job %s was canceled during submission; task %s %s", job.id, provider_job_id,
                 "stopped" if stopped else "could not be stopped")
        await self.store.jobs.update(job.id, provider_job_id=provider_job_id, next_run_at=None, release=True)

    async def _cancel_orphan(self, job: Job, request: AnyRequest, provider: VideoProvider) -> None:
        """A job canceled while it was submitting (perhaps in a process that crashed): find its task, stop it."""
        assert job.request_key is not None
        try:
            ctx = await self._context(job, request, fetch_reference=False)
            found = await provider.find(job.request_key, ctx)
        except ProviderError as error:
            if error.retryable and job.attempts < MAX_RETRIES:
                await self.store.jobs.update(job.id, owner=self.owner, attempts=job.attempts + 1,
                                             next_run_at=self.clock() + retry_delay(job.attempts, self.scale,
                                                                                    error.retry_after),
                                             release=True)
                return
            found = []
        for provider_job_id in found:
            await self._stop_canceled(job, request, provider, provider_job_id)
        if not found:
            await self.store.jobs.update(job.id, owner=self.owner, next_run_at=None, release=True)

    async def _poll(self, job: Job, request: AnyRequest, provider: VideoProvider) -> None:
        assert job.provider_job_id is not None
        try:
            ctx = await self._context(job, request, fetch_reference=False)
            status = await provider.status(job.provider_job_id, ctx)
        except ProviderError as error:
            await self._provider_error(job, error)
            return
        crash_point("while_polling")
        if status.state is ProviderState.SUCCEEDED:
            await self._observe_render_time(job, request, provider)
            await self._download(job, ctx, provider, status)
        elif status.state is ProviderState.FAILED:
            error = status.error or ProviderError(ErrorKind.TRANSIENT, "the provider reported a failure")
            await self._fail(job, error.kind.value, error.message)
        elif status.state is ProviderState.CANCELED:
            await self.store.jobs.update(job.id, owner=self.owner, state=JobState.CANCELED,
                                         error_code="canceled", error_message="canceled at the provider")
            self.wake()  # the outbox row written with it tells the user
        else:
            await self._still_running(job, request, provider, status)

    @staticmethod
    def _render_key(provider: VideoProvider, request: AnyRequest) -> RenderKey:
        return RenderKey(provider.name, provider.model_id(request), float(request.duration), request.size_text())

    async def _observe_render_time(self, job: Job, request: AnyRequest, provider: VideoProvider) -> None:
        """Teach the schedule: the render finished after the last look (the job's last update) and by now.

        Best effort: a lost observation only makes the schedule learn a little slower.
        """
        now = self.clock()
        started = job.submitted_at or job.created_at
        try:
            await self.schedule.observe(self._render_key(provider, request), provider.expected_seconds(request),
                                        min(job.updated_at, now) - started, now - started)
        except Exception:
            log.warning("job %s: could not record its render time", job.id, exc_info=True)

    async def _still_running(self, job: Job, request: AnyRequest, provider: VideoProvider,
                             status: StatusResult) -> None:
        now = self.clock()
        elapsed = now - (job.submitted_at or job.created_at)
        if elapsed >= self.schedule.give_up_after():
            # The hard cap (MAX_RENDER_MINUTES): stop the provider's work where it can, then refund.
            with contextlib.suppress(Exception):
                await provider.cancel(job.provider_job_id or "", JobContext(job_id=job.id, request=request))
            minutes = self.settings.max_render_minutes
            await self._fail(job, "render_timeout", f"the provider did not finish the render within {minutes:g} "
                             "minutes; it was stopped and your credits were refunded")
            return
        delay = self.schedule.next_delay(self._render_key(provider, request), provider.expected_seconds(request),
                                         elapsed, progress=status.progress, poll_after=status.poll_after)
        state = JobState.RUNNING if status.state is ProviderState.RUNNING else job.state
        job = await self.store.jobs.update(
            job.id, owner=self.owner, state=state, progress=status.progress, attempts=0,
            next_run_at=now + delay, release=True, now=now,
        )
        try:
            if await self.notifier.progress(job, status):
                await self.store.jobs.update(job.id, last_progress_edit_at=self.clock())
        except Exception:
            log.warning("job %s: progress update failed", job.id, exc_info=True)

    async def _download(self, job: Job, ctx: JobContext, provider: VideoProvider, status: StatusResult) -> None:
        if not status.result_url:
            await self._provider_error(job, ProviderError(ErrorKind.TRANSIENT, "the provider gave no video"))
            return
        dest = self.settings.video_dir / f"job{job.id}.mp4"
        try:
            await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
            crash_point("before_download")
            size = await provider.fetch(status.result_url, dest, ctx, max_bytes=MAX_VIDEO_BYTES)
            crash_point("after_download")
        except ProviderError as error:
            await self._provider_error(job, error)
            return
        except OSError as error:
            log.error("job %s: cannot write the video to %s: %s", job.id, dest.parent, error.strerror)
            await self._fail(job, "storage", "the bot could not save the video (disk problem)")
            return
        remote = status.result_url if urlsplit(status.result_url).scheme in {"http", "https"} else None
        try:
            job = await self.store.jobs.update(
                job.id, owner=self.owner, state=JobState.DOWNLOADED, result_path=str(dest), result_url=remote,
                result_bytes=size, progress=100, attempts=0, next_run_at=self.clock(),
            )
        except (IllegalTransition, LeaseLost):
            await self._discard_if_ended(job.id, dest)
            raise
        await self._deliver(job)

    async def _discard_if_ended(self, job_id: int, dest: Path) -> None:
        """A job canceled (or failed) while we downloaded keeps no file: it was refunded, nobody may fetch it.

        Only then: after a lost lease another worker may own the job and be writing the same file.
        """
        current = await self.store.jobs.get(job_id)
        if current is None or current.state in (JobState.CANCELED, JobState.FAILED):
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            log.info("job %s ended during its download; the file was removed", job_id)

    async def _acked(self, job: Job) -> Job:
        """A job whose answer was sent but not recorded (crash in between): record it once Discord confirms."""
        if job.acked_at is None and job.interaction_token and await self.notifier.confirm_ack(job):
            await self.store.jobs.acknowledge([job.id], now=self.clock())
            return await self.store.jobs.get(job.id) or job
        return job

    async def _deliver(self, job: Job) -> None:
        await self._hold(job)
        job = await self._acked(job)
        try:
            outcome = await self.notifier.deliver(job)
        except DeliveryRetry as retry:
            if job.attempts + 1 >= MAX_DELIVERY_ATTEMPTS:
                await self.store.jobs.update(job.id, owner=self.owner, state=JobState.UNDELIVERED,
                                             error_code="undelivered", error_message=str(retry), next_run_at=None,
                                             release=True)
                return
            delay = retry_delay(job.attempts, self.scale, retry.retry_after)
            await self.store.jobs.update(job.id, owner=self.owner, attempts=job.attempts + 1,
                                         error_message=str(retry), next_run_at=self.clock() + delay, release=True)
            return
        if outcome.waiting:
            await self.store.jobs.update(job.id, owner=self.owner, next_run_at=None, release=True)
            return
        if outcome.message_id is None:
            await self.store.jobs.update(job.id, owner=self.owner, state=JobState.UNDELIVERED,
                                         error_code="undelivered", error_message=outcome.note, next_run_at=None,
                                         release=True)
            return
        job = await self.store.jobs.update(job.id, owner=self.owner, state=JobState.DELIVERED,
                                           delivered_message_id=outcome.message_id,
                                           delivered_channel_id=outcome.channel_id)
        crash_point("after_delivered")
        if self.settings.keep_videos_hours == 0:
            await retention.sweep(self.store, 0, refs_dir=self.settings.video_dir / "refs")

    # -- errors --------------------------------------------------------------------------------

    async def _provider_error(self, job: Job, error: ProviderError) -> None:
        if error.retryable and job.attempts < MAX_RETRIES:
            log.info("job %s: %s; retrying", job.id, error.kind.value)
            await self._retry_later(job, error, code=error.kind.value)
            return
        model = {"provider_model": error.model} if error.model else {}
        await self._fail(job, error.kind.value, error.message, **model)

    async def _retry_later(self, job: Job, error: ProviderError, *, code: str) -> None:
        if job.attempts >= MAX_RETRIES:
            await self._fail(job, code, error.message)
            return
        delay = retry_delay(job.attempts, self.scale, error.retry_after)
        await self.store.jobs.update(job.id, owner=self.owner, attempts=job.attempts + 1, error_code=code,
                                     error_message=error.message, next_run_at=self.clock() + delay, release=True)

    async def _fail(self, job: Job, code: str, message: str, **changes: object) -> None:
        """Fail and refund (exactly once: the ledger's settle key); the outbox row written in the same
        transaction tells the user, even if we crash right after. A job already rendered and paid for is
        never failed: it becomes UNDELIVERED (its video stays available through /job show)."""
        if job.state in (JobState.DOWNLOADED, JobState.UNDELIVERED):
            log.warning("job %s: giving up delivery (%s)", job.id, code)
            await self.store.jobs.update(job.id, owner=self.owner, state=JobState.UNDELIVERED, error_code="undelivered",
                                         error_message=message, next_run_at=None, release=True)
            return
        log.info("job %s failed: %s", job.id, code)
        crash_point("during_refund")
        await self.store.jobs.update(job.id, owner=self.owner, state=JobState.FAILED, error_code=code,
                                     error_message=message, **changes)
        crash_point("after_refund")
        self.wake()

    # -- the outbox ----------------------------------------------------------------------------

    async def _guarded_outbox(self, row: OutboxRow) -> None:
        async with self._slots:
            try:
                await self.run_outbox(row)
            except LeaseLost:
                log.info("outbox row %s taken over by another worker", row.id)
            except Exception:
                log.exception("outbox row %s: unexpected error; will retry", row.id)
                await self._outbox_retry(row, "internal error", None)

    async def run_outbox(self, row: OutboxRow) -> None:
        """Deliver one owed notice/card edit (at least once; the row's key is the Discord nonce)."""
        job = await self.store.jobs.get(row.job_id)
        if job is None:
            await self.store.jobs.outbox_finish(row.id, self.owner, error="job gone", now=self.clock())
            return

        job = await self._acked(job)

        async def on_route(route: str) -> None:
            await self.store.jobs.outbox_route(row.id, self.owner, route)

        try:
            if row.kind == "ended":
                message_id = await self.notifier.ended(job, nonce=row.dedup_key, skip_followup=row.route == "followup",
                                                       on_route=on_route)
            else:
                message_id = None
                await self.notifier.card(job)
        except DeliveryRetry as retry:
            await self._outbox_retry(row, str(retry), retry.retry_after)
            return
        crash_point("after_notice")
        await self._release_partner(job)
        await self.store.jobs.outbox_finish(row.id, self.owner, message_id=message_id, now=self.clock())

    async def _outbox_retry(self, row: OutboxRow, error: str, hint: float | None) -> None:
        if row.attempts + 1 >= MAX_NOTICE_ATTEMPTS:  # given up: logged and kept, never a loop
            log.warning("outbox row %s (job %s): giving up after %s attempts: %s", row.id, row.job_id,
                        row.attempts + 1, error)
            await self.store.jobs.outbox_finish(row.id, self.owner, error=error, now=self.clock())
            return
        retry_at = self.clock() + retry_delay(row.attempts, self.scale, hint)
        await self.store.jobs.outbox_finish(row.id, self.owner, error=error, retry_at=retry_at, now=self.clock())

    async def _release_partner(self, job: Job) -> None:
        """A /compare half ended without a video: its rendered partner waits for nothing now."""
        partner = await self.store.jobs.partner(job)
        if partner is not None and partner.state is JobState.DOWNLOADED and partner.next_run_at is None:
            await self.store.jobs.update(partner.id, next_run_at=self.clock())  # deliver the survivor alone
            self.wake()
