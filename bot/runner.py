"""The owner of a job's life: every transition a job makes, and nothing about when it is made.

`JobRunner.step(job)` moves a claimed job one step: submit (intent, find, record), poll (status,
still running, render-time observation, the MAX_RENDER_MINUTES cap), download, deliver, fail and
refund, stop an orphan canceled during submission. `JobRunner.outbox(row)` delivers one owed notice
or card edit. The scheduler (bot/poller.py) decides when: it claims due jobs and outbox rows under a
lease, keeps the lease alive and calls these. Delivery (bot/delivery.py) is a Discord adapter: the
runner loads what it shows (a /compare pair included) and records what it posted, so job state is
written here and in the service's commands only. The file-path conventions (reference image,
result) and the decryption of users' own keys live here too, one place for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from bot import catalogue, images, retention
from bot.config import Settings, default_worker_id
from bot.crypto import SecretBox
from bot.faults import crash_point
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState, StatusResult, VideoProvider
from bot.providers.registry import ProviderRegistry
from bot.requests import AnyRequest, request_from_json
from bot.schedule import RenderKey, Schedule
from storage import Compare, IllegalTransition, Job, JobState, LeaseLost, OutboxRow, StorageError, Store

log = logging.getLogger(__name__)

MAX_RETRIES = 8  # consecutive retryable errors before a job is given up (and refunded)
MAX_DELIVERY_ATTEMPTS = 6
MAX_NOTICE_ATTEMPTS = 8  # an outbox row is given up (logged, kept) after this many failed deliveries
MAX_VIDEO_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Delivered:
    """Where a finished job was posted; `message_id` None means no route worked."""

    message_id: int | None
    channel_id: int | None = None
    note: str | None = None
    waiting: bool = False  # a /compare half waits for its partner, which delivers both
    # Other jobs shown in the same message (a /compare partner that was waiting): the runner records them
    # delivered too, so delivery itself never writes job state.
    also_delivered: tuple[int, ...] = ()
    card_replaced: bool = False  # the result is the card itself, edited (else the card is retired afterwards)


@dataclass(frozen=True)
class ComparePair:
    """A /compare as delivery shows it: the record (blind or not, which model is A) and both jobs, by id.

    Loaded by the runner, so delivery draws the shared card and the pair's post without a store.
    """

    compare: Compare
    jobs: tuple[Job, ...]

    def partner(self, job: Job) -> Job | None:
        """The other job of the pair."""
        return next((other for other in self.jobs if other.id != job.id), None)

    def with_job(self, job: Job) -> ComparePair:
        """The pair showing `job` as given (e.g. its state about to be recorded) instead of as loaded."""
        return replace(self, jobs=tuple(job if other.id == job.id else other for other in self.jobs))


class DeliveryRetry(Exception):
    """Discord is unavailable for now; try delivering again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Notifier(Protocol):
    """The Discord side of a job (bot/delivery.py); the runner itself knows nothing of Discord."""

    async def deliver(self, job: Job, *, pair: ComparePair | None = None) -> Delivered:
        """Post the finished video (a /compare's both halves, given `pair`). DeliveryRetry: later."""
        ...

    async def progress(self, job: Job, status: StatusResult, *, pair: ComparePair | None = None) -> bool: ...

    async def ended(self, job: Job, *, nonce: str, skip_followup: bool = False,
                    on_route: Callable[[str], Awaitable[None]] | None = None,
                    pair: ComparePair | None = None) -> int | None:
        """Show the end on the card and post the notice; the posted message id. DeliveryRetry: later."""
        ...

    async def card(self, job: Job, *, pair: ComparePair | None = None) -> None:
        """Show the job's state on the command's answer. DeliveryRetry: try again later."""
        ...

    async def retire(self, job: Job, *, pair: ComparePair | None = None) -> None:
        """The result was posted as its own message: delete the card (or show the end on it). DeliveryRetry."""
        ...

    async def confirm_ack(self, job: Job) -> int | None:
        """The card's message id if the command was answered although no acknowledgement was recorded."""
        ...


def new_request_key(job_id: int) -> str:
    """A submit key unique per install: the job id alone repeats after a database reset or a move."""
    return f"j{job_id}-{secrets.token_hex(8)}"


def retry_delay(attempts: int, scale: float, hint: float | None) -> float:
    """Exponential backoff for retryable errors; a provider's hint wins when it asks for longer."""
    backoff = min(2.0 * 2**attempts, 300.0) * scale
    return max(backoff, hint or 0.0)


class JobRunner:
    """Every transition of a job; one per process, shared by the scheduler and the service."""

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
        self._secrets = secrets
        self.clock = clock
        self.owner = owner or settings.worker_id or default_worker_id()
        self.scale = settings.poll_time_scale
        # When to look next; benchmarks swap in fixed-interval schedules as baselines.
        self.schedule = schedule or Schedule(settings, store.render_times, clock=clock)
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(20.0), limits=httpx.Limits(max_connections=10))
        self._on_wake: Callable[[], None] = lambda: None

    def on_wake(self, wake: Callable[[], None]) -> None:
        """Who to tell when a job became due now (the scheduler's wake-up)."""
        self._on_wake = wake

    def wake(self) -> None:
        """A job became due now (created, canceled, failed with a notice owed): the scheduler looks again."""
        self._on_wake()

    async def close(self) -> None:
        await self._http.aclose()

    # -- secrets and paths (the service's way to them too) ---------------------------------------

    def seal_token(self, token: str) -> str:
        """An interaction token as stored (encrypted at rest)."""
        return self._secrets.encrypt_text(token)

    def seal_key(self, key: str) -> bytes:
        """A user's own API key as stored (encrypted at rest)."""
        return self._secrets.encrypt(key)

    def reference_path(self, job_id: int) -> Path:
        """Where a job's fitted first frame lives (a rerun reuses it)."""
        return self.settings.video_dir / "refs" / f"job{job_id}.png"

    def result_path(self, job_id: int) -> Path:
        """Where a job's downloaded video lives."""
        return self.settings.video_dir / f"job{job_id}.mp4"

    async def compare_pair(self, job: Job) -> ComparePair | None:
        """What delivery needs to show a /compare job (None for a single job or a missing record)."""
        if job.compare_id is None:
            return None
        compare = await self.store.jobs.get_compare(job.compare_id)
        if compare is None:
            return None
        jobs = await self.store.jobs.compare_jobs(job.compare_id)
        return ComparePair(compare, tuple(jobs)).with_job(job)


    # -- one step of one job --------------------------------------------------------------------

    async def step(self, job: Job) -> None:
        """Move a claimed job one step along its life (the caller holds its lease)."""
        request = request_from_json(job.model, job.request_json)
        provider = self.providers.get(job.provider)
        if job.state in (JobState.ACCEPTED, JobState.SUBMITTING) and not catalogue.current().offers(request.model_id):
            # Deleted from MODELS_FILE while this job waited: never submit a stand-in model in its place.
            log.warning("job %s: model %s is no longer in the model catalogue (deleted from MODELS_FILE?); the job "
                        "is refunded. Set `enabled = false` on a model to retire it: its jobs then finish.",
                        job.id, request.model_id)
            await self._fail(job, "model_removed", f"this bot no longer offers the model `{request.model_id}`; "
                             "your credits were refunded.")
            return
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
            api_key = SecretStr(self._secrets.decrypt(stored[0]))
        if job.reference_url:
            path = self.reference_path(job.id)
            if fetch_reference:
                path = await self._reference_image(job, request)
            if path.exists():
                request = request.model_copy(update={"reference_image": str(path)})
        return JobContext(job_id=job.id, request=request, api_key=api_key, request_key=job.request_key,
                          submitted_since=job.submitted_at)

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
            if await self.notifier.progress(job, status, pair=await self.compare_pair(job)):
                await self.store.jobs.update(job.id, last_progress_edit_at=self.clock())
        except Exception:
            log.warning("job %s: progress update failed", job.id, exc_info=True)

    async def _download(self, job: Job, ctx: JobContext, provider: VideoProvider, status: StatusResult) -> None:
        if not status.result_url:
            await self._provider_error(job, ProviderError(ErrorKind.TRANSIENT, "the provider gave no video"))
            return
        dest = self.result_path(job.id)
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
        if job.acked_at is None and job.interaction_token and (card := await self.notifier.confirm_ack(job)):
            await self.store.jobs.acknowledge([job.id], now=self.clock(), card_message_id=card)
            return await self.store.jobs.get(job.id) or job
        return job

    async def _deliver(self, job: Job) -> None:
        await self._hold(job)
        job = await self._acked(job)
        pair = await self.compare_pair(job)
        try:
            outcome = await self.notifier.deliver(job, pair=pair)
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
        # One message per job: unless the card itself became the result, its retirement (deleted next to the
        # post, else shown ended) is owed in the same transaction as DELIVERED, one row per card (a /compare
        # pair shares one), so a crash right after cannot leave a live card next to the result.
        retire = not outcome.card_replaced
        # The partner first: a crash before our own record re-posts (the nonce returns the same message)
        # and records us; the other order could leave the partner waiting forever.
        for other_id in outcome.also_delivered:  # the waiting partner holds no lease: no owner to check
            try:
                await self.store.jobs.update(other_id, state=JobState.DELIVERED,
                                             delivered_message_id=outcome.message_id,
                                             delivered_channel_id=outcome.channel_id, retire_card=retire)
            except StorageError:
                log.info("job %s: shown with job %s but already settled", other_id, job.id)
        job = await self.store.jobs.update(job.id, owner=self.owner, state=JobState.DELIVERED,
                                           delivered_message_id=outcome.message_id,
                                           delivered_channel_id=outcome.channel_id, retire_card=retire)
        crash_point("after_delivered")
        if self.settings.keep_videos_hours == 0:
            await retention.sweep(self.store, 0, refs_dir=self.settings.video_dir / "refs")

    # -- errors --------------------------------------------------------------------------------

    async def step_crashed(self, job: Job) -> None:
        """A step raised something unexpected (a bug): retry later like a transient error, bounded."""
        await self._retry_later(job, ProviderError(ErrorKind.TRANSIENT, "internal error"), code="internal")

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

    async def outbox(self, row: OutboxRow) -> None:
        """Deliver one owed notice/card edit (at least once; the row's key is the Discord nonce)."""
        job = await self.store.jobs.get(row.job_id)
        if job is None:
            await self.store.jobs.outbox_finish(row.id, self.owner, error="job gone", now=self.clock())
            return

        job = await self._acked(job)

        async def on_route(route: str) -> None:
            await self.store.jobs.outbox_route(row.id, self.owner, route)

        pair = await self.compare_pair(job)
        try:
            if row.kind == "ended":
                message_id = await self.notifier.ended(job, nonce=row.dedup_key, skip_followup=row.route == "followup",
                                                       on_route=on_route, pair=pair)
            elif row.kind == "retire":
                message_id = None
                await self.notifier.retire(job, pair=pair)
            else:
                message_id = None
                await self.notifier.card(job, pair=pair)
        except DeliveryRetry as retry:
            await self.outbox_retry(row, str(retry), retry.retry_after)
            return
        crash_point("after_notice")
        await self._release_partner(job)
        await self.store.jobs.outbox_finish(row.id, self.owner, message_id=message_id, now=self.clock())

    async def outbox_retry(self, row: OutboxRow, error: str, hint: float | None = None) -> None:
        """This notice could not be delivered now: try again later, or give it up after MAX_NOTICE_ATTEMPTS."""
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
