"""The job runner: every transition of a job (submit, poll, download, deliver, fail and refund, the outbox)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Settings
from bot.crypto import SecretBox
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
)
from bot.providers.registry import ProviderRegistry
from bot.requests import parse_request
from bot.runner import Delivered, DeliveryRetry, JobRunner, retry_delay
from storage import ComparePairing, JobState, LedgerKind, NewJob, Store


class ScriptedProvider(VideoProvider):
    """A provider whose answers the test scripts, counting every call."""

    name = "scripted"

    def __init__(self) -> None:
        self.submit_errors: list[ProviderError] = []
        self.statuses: list[StatusResult | ProviderError] = []
        self.fetch_error: ProviderError | None = None
        self.calls: list[str] = []
        self.contexts: list[JobContext] = []
        self.created: list[tuple[str | None, str]] = []
        self.canceled: list[str] = []
        self.can_cancel = True
        self.gate: asyncio.Event | None = None
        self.lose_answers = 0

    def expected_seconds(self, request):  # type: ignore[no-untyped-def]
        return (100.0, 200.0)

    async def submit(self, ctx: JobContext) -> str:
        self.calls.append("submit")
        self.contexts.append(ctx)
        if self.gate is not None:
            await self.gate.wait()
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        task = f"task-{ctx.job_id}" + (f"-{len(self.created)}" if self.created else "")
        self.created.append((ctx.request_key, task))  # the provider has it, whatever the answer does
        if self.lose_answers:
            self.lose_answers -= 1
            raise ProviderError(ErrorKind.TRANSIENT, "read timeout")
        return task

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        self.calls.append("find")
        return [task for key, task in self.created if key == request_key]

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        self.calls.append("status")
        answer = self.statuses.pop(0) if self.statuses else StatusResult(ProviderState.RUNNING, progress=50)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        self.calls.append("cancel")
        self.canceled.append(provider_job_id)
        return self.can_cancel

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        self.calls.append("fetch")
        if self.fetch_error:
            raise self.fetch_error
        dest.write_bytes(b"\x00\x00\x00\x18ftypmp42video")
        return dest.stat().st_size


class RecordingNotifier:
    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.endings: list[tuple[int, str | None]] = []
        self.progress_calls = 0
        self.fail_deliveries = 0
        self.fail_notices = 0
        self.cards: list[tuple[int, JobState]] = []
        self.retired: list[int] = []

    async def deliver(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        if self.fail_deliveries:
            self.fail_deliveries -= 1
            raise DeliveryRetry("Discord 503", retry_after=1.0)
        self.delivered.append(job.id)
        return Delivered(1000 + job.id, 5)

    async def progress(self, job, status, *, pair=None):  # type: ignore[no-untyped-def]
        self.progress_calls += 1
        return True

    async def ended(self, job, *, nonce, skip_followup=False, on_route=None, pair=None):  # type: ignore[no-untyped-def]
        if self.fail_notices:
            self.fail_notices -= 1
            raise DeliveryRetry("Discord 503")
        self.endings.append((job.id, job.error_code))
        return 2000 + job.id

    async def card(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        self.cards.append((job.id, job.state))

    async def retire(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        self.retired.append(job.id)

    async def confirm_ack(self, job):  # type: ignore[no-untyped-def]
        return None


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build_runner(store: Store, tmp_path: Path) -> tuple[JobRunner, ScriptedProvider, RecordingNotifier, Clock]:
    """A runner over the real store with a scripted provider, a recording notifier and a hand-moved clock."""
    settings = Settings(video_dir=tmp_path / "videos", poll_time_scale=1.0, database_path=tmp_path / "db.sqlite3")
    provider = ScriptedProvider()
    registry = ProviderRegistry(settings, instances={"scripted": provider})
    notifier = RecordingNotifier()
    clock = Clock()
    runner = JobRunner(store, registry, settings, notifier=notifier, secrets=SecretBox("k" * 32), clock=clock,
                       owner="w1")
    return runner, provider, notifier, clock


@pytest.fixture
def parts(store: Store, tmp_path: Path):  # type: ignore[no-untyped-def]
    return build_runner(store, tmp_path)


async def make_job(store: Store, clock: Clock, price: int = 10) -> int:
    request = parse_request("kling", prompt="a fox")
    [job] = await store.jobs.create([NewJob(user_id=1, model="kling", provider="scripted",
                                            request_json=request.model_dump_json(), price=price)], now=clock.now)
    return job.id


async def step(runner: JobRunner, clock: Clock) -> list[int]:
    """Claim what is due at the fake clock's time and run its step, like one scheduler iteration."""
    jobs = await runner.store.jobs.claim_due("w1", lease_seconds=300, now=clock.now)
    for job in jobs:
        await runner.step(job)
    for row in await runner.store.jobs.claim_outbox("w1", lease_seconds=300, now=clock.now):
        await runner.outbox(row)
    return [job.id for job in jobs]


def test_retry_delay_grows_and_honours_hints() -> None:
    assert retry_delay(0, 1.0, None) == 2.0
    assert retry_delay(3, 1.0, None) == 16.0
    assert retry_delay(20, 1.0, None) == 300.0
    assert retry_delay(0, 0.001, 7.5) == 7.5  # Retry-After is never scaled away


async def test_job_goes_from_accepted_to_delivered(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    assert await step(runner, clock) == [job_id]
    job = await store.jobs.get(job_id)
    assert job.state is JobState.SUBMITTED and job.provider_job_id == f"task-{job_id}"
    assert clock.now < job.next_run_at < clock.now + 100  # an early look, before the typical wait
    assert await step(runner, clock) == []  # nothing due yet: no request made
    clock.now = job.next_run_at
    provider.statuses = [StatusResult(ProviderState.RUNNING, progress=40)]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.RUNNING and job.progress == 40 and notifier.progress_calls == 1
    clock.now = job.next_run_at
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.DELIVERED and job.delivered_message_id == 1000 + job_id
    assert Path(job.result_path).exists() and job.result_url == "https://cdn.example/v.mp4"
    assert provider.calls == ["submit", "status", "status", "fetch"]
    kinds = [e.kind for e in await store.ledger.entries_for_job(job_id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.CAPTURE]


async def test_rate_limit_on_submit_waits_the_hinted_time(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.submit_errors = [ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=42.0)]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.SUBMITTING and job.attempts == 1 and job.next_run_at == clock.now + 42.0
    clock.now += 42.0
    await step(runner, clock)
    assert (await store.jobs.get(job_id)).state is JobState.SUBMITTED


@pytest.mark.parametrize("kind", [ErrorKind.CONTENT_POLICY, ErrorKind.MODEL_UNAVAILABLE, ErrorKind.AUTH,
                                  ErrorKind.QUOTA_OR_BILLING, ErrorKind.INVALID_REQUEST])
async def test_permanent_errors_fail_and_refund_once(store: Store, parts, kind: ErrorKind) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.submit_errors = [ProviderError(kind, "no")]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == kind.value
    assert notifier.endings == [(job_id, kind.value)]
    assert await store.ledger.balance(1, now=clock.now) == 120
    assert await step(runner, clock) == []


async def test_transient_errors_give_up_after_max_retries(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.submit_errors = [ProviderError(ErrorKind.TRANSIENT, "503") for _ in range(20)]
    for _ in range(20):
        job = await store.jobs.get(job_id)
        if job.state is JobState.FAILED:
            break
        clock.now = max(clock.now, job.next_run_at or clock.now)
        await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "transient"
    assert provider.calls.count("submit") == 9  # the first try and 8 retries
    assert await store.ledger.balance(1, now=clock.now) == 120


async def test_failed_status_and_expired_output_refund(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    first, second = await make_job(store, clock), await make_job(store, clock)
    await step(runner, clock)
    clock.now += 1000
    provider.statuses = [
        StatusResult(ProviderState.FAILED, error=ProviderError(ErrorKind.CONTENT_POLICY, "flagged")),
        StatusResult(ProviderState.SUCCEEDED, result_url="https://x/y.mp4"),
    ]
    provider.fetch_error = ProviderError(ErrorKind.INVALID_REQUEST, "output expired", provider_code="output_expired")
    await step(runner, clock)
    assert {(await store.jobs.get(i)).state for i in (first, second)} == {JobState.FAILED}
    assert await store.ledger.balance(1, now=clock.now) == 120
    assert (await store.ledger.audit())["unsettled_finished_jobs"] == 0


async def test_render_running_past_the_cap_is_canceled_then_refunded(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    await step(runner, clock)
    clock.now += runner.settings.max_render_minutes * 60 + 1
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "render_timeout"
    assert provider.calls[-1] == "cancel"
    assert await store.ledger.balance(1, now=clock.now) == 120


async def test_delivery_retries_then_gives_up_as_undelivered(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    await step(runner, clock)
    notifier.fail_deliveries = 100
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="file:///x")]
    for _ in range(12):
        job = await store.jobs.get(job_id)
        if job.next_run_at is None:
            break
        clock.now = max(clock.now + 0.001, job.next_run_at)
        await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.UNDELIVERED and job.result_path
    # The credits stay captured: the video exists and /job show can hand it out.
    assert await store.ledger.balance(1, now=clock.now) == 110


async def test_unwritable_video_dir_fails_cleanly_with_a_refund(store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the video folder should be")
    settings = Settings(video_dir=blocker / "videos", database_path=tmp_path / "db.sqlite3")
    provider = ScriptedProvider()
    notifier = RecordingNotifier()
    clock = Clock()
    runner = JobRunner(store, ProviderRegistry(settings, instances={"scripted": provider}), settings,
                          notifier=notifier, secrets=SecretBox("k" * 32), clock=clock, owner="w1")
    job_id = await make_job(store, clock)
    await step(runner, clock)
    clock.now += 1000
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://x/v.mp4")]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "storage" and "disk" in (job.error_message or "")
    assert notifier.endings == [(job_id, "storage")]
    assert await store.ledger.balance(1, now=clock.now) == 120


async def test_provider_down_for_an_hour_is_bounded_and_refunded(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    """Every status call fails for an hour of simulated time: a handful of requests, then a refund."""
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    await step(runner, clock)
    start = clock.now
    provider.statuses = [ProviderError(ErrorKind.TRANSIENT, "502") for _ in range(1000)]
    while clock.now - start < 3600:
        job = await store.jobs.get(job_id)
        if job.next_run_at is None:
            break
        clock.now = max(job.next_run_at, clock.now + 0.001)
        await step(runner, clock)
    job = await store.jobs.get(job_id)
    polls = provider.calls.count("status")
    print(f"\nprovider down: {polls} status requests in {clock.now - start:.0f} s of simulated time, "
          f"then {job.state.value}")
    assert job.state is JobState.FAILED and job.error_code == "transient"
    assert polls <= 10  # backoff, not a busy loop
    assert await store.ledger.balance(1, now=clock.now) == 120


async def test_lost_create_answer_is_found_not_submitted_again(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    """The provider made the task but the answer was lost: the retry looks it up by the request key."""
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.lose_answers = 1
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.SUBMITTING and job.request_key and str(job_id) != job.request_key
    assert provider.contexts[0].request_key == job.request_key
    clock.now = job.next_run_at
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.SUBMITTED and job.provider_job_id == f"task-{job_id}"
    assert provider.calls == ["submit", "find"]  # found, never submitted twice


async def test_duplicates_found_are_canceled_and_one_is_kept(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    job = await store.jobs.update(job_id, state=JobState.SUBMITTING, request_key="j1-old", submitted_at=clock.now)
    provider.created = [("j1-old", "first"), ("j1-old", "second"), ("another-install", "theirs")]
    await step(runner, clock)
    job = await store.jobs.get(job_id)
    assert job.state is JobState.SUBMITTED and job.provider_job_id == "first"
    assert provider.canceled == ["second"] and "submit" not in provider.calls


async def test_nothing_found_submits_with_the_same_key(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    await store.jobs.update(job_id, state=JobState.SUBMITTING, request_key="j1-kept", submitted_at=clock.now)
    await step(runner, clock)
    assert provider.calls == ["find", "submit"] and provider.contexts[0].request_key == "j1-kept"
    assert (await store.jobs.get(job_id)).state is JobState.SUBMITTED


async def test_cancel_during_submission_stops_the_task_once_its_id_is_known(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.gate = asyncio.Event()
    [job] = await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now)
    running = asyncio.create_task(runner.step(job))
    while not provider.contexts:
        await asyncio.sleep(0.01)
    canceled = await store.jobs.update(job_id, state=JobState.CANCELED, error_code="canceled", now=clock.now)
    assert canceled.state is JobState.CANCELED
    provider.gate.set()
    await running
    job = await store.jobs.get(job_id)
    assert job.state is JobState.CANCELED and job.provider_job_id == f"task-{job_id}"
    assert provider.canceled == [f"task-{job_id}"]


async def test_failure_notice_is_owed_in_the_same_transaction(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    """A crash right after the fail+refund commit still ends in exactly one notice."""
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.submit_errors = [ProviderError(ErrorKind.CONTENT_POLICY, "no")]
    [job] = await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now)
    await runner.step(job)  # ... and the process dies before telling anyone
    assert (await store.jobs.get(job_id)).state is JobState.FAILED  # type: ignore[union-attr]
    [owed] = await store.jobs.outbox_for_job(job_id)
    assert owed["kind"] == "ended" and owed["done_at"] is None and notifier.endings == []
    notifier.fail_notices = 2  # Discord struggles first
    for _ in range(5):
        await step(runner, clock)
        clock.now += 60
    assert notifier.endings == [(job_id, "content_policy")]
    [done] = await store.jobs.outbox_for_job(job_id)
    assert done["message_id"] == 2000 + job_id and done["attempts"] == 2 and done["next_run_at"] is None


async def test_undeliverable_notice_is_given_up_not_looped(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    job_id = await make_job(store, clock)
    provider.submit_errors = [ProviderError(ErrorKind.AUTH, "no")]
    notifier.fail_notices = 100
    for _ in range(20):
        await step(runner, clock)
        clock.now += 600
    [row] = await store.jobs.outbox_for_job(job_id)
    assert row["next_run_at"] is None and row["done_at"] is not None and row["message_id"] is None
    assert notifier.fail_notices == 100 - 8 and await store.jobs.next_due_at() is None


class PairNotifier(RecordingNotifier):
    """Shows /compare pairs as delivery does: waits for the partner, then posts both and says so."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[int, tuple[int, ...]]] = []
        self.pair_cards: list[dict[int, JobState]] = []

    async def deliver(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        assert pair is not None and pair.compare.id == job.compare_id
        partner = pair.partner(job)
        if partner is not None and partner.state.active:
            return Delivered(None, waiting=True)
        shown = (partner.id,) if partner is not None and partner.state is JobState.DOWNLOADED else ()
        self.posts.append((job.id, shown))
        return Delivered(3000, 5, also_delivered=shown)

    async def card(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        assert pair is not None
        self.pair_cards.append({shown.id: shown.state for shown in pair.jobs})

    async def retire(self, job, *, pair=None):  # type: ignore[no-untyped-def]
        assert pair is not None
        self.pair_cards.append({shown.id: shown.state for shown in pair.jobs})


async def test_compare_pair_is_recorded_delivered_before_its_card_is_retired(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    """Delivery gets the pair from the runner and says which partner it showed; the runner records both
    jobs, with the shared card's retirement owed once (an outbox row written with DELIVERED), and the card
    is retired seeing both Done (the reverted ef95295 did not)."""
    runner, provider, _, clock = parts
    runner.notifier = notifier = PairNotifier()
    requests = [parse_request("kling", prompt="a fox"), parse_request("sora", prompt="a fox")]
    first, second = await store.jobs.create(
        [NewJob(user_id=1, model=request.model.value, provider="scripted", request_json=request.model_dump_json(),
                price=10) for request in requests], now=clock.now, compare=ComparePairing(blind=False, slot_a="kling"))
    await step(runner, clock)
    clock.now += 1000
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")] * 2
    waiter, poster = await step(runner, clock)
    assert {waiter, poster} == {first.id, second.id}
    assert notifier.posts == [(poster, (waiter,))]  # the first to finish waited; the second posted both
    for job_id in (first.id, second.id):
        job = await store.jobs.get(job_id)
        assert job.state is JobState.DELIVERED and job.delivered_message_id == 3000
    rows = await store.jobs.outbox_for_job(first.id) + await store.jobs.outbox_for_job(second.id)
    assert [(row["kind"], row["done_at"] is not None) for row in rows] == [("retire", True)]
    assert notifier.pair_cards == [{first.id: JobState.DELIVERED, second.id: JobState.DELIVERED}]


async def test_the_runner_loads_a_compare_pair_as_one_typed_value(store: Store, parts) -> None:  # type: ignore[no-untyped-def]
    runner, provider, notifier, clock = parts
    requests = [parse_request("kling", prompt="a fox"), parse_request("sora", prompt="a fox")]
    jobs = await store.jobs.create(
        [NewJob(user_id=1, model=request.model.value, provider="scripted", request_json=request.model_dump_json(),
                price=10) for request in requests], now=clock.now, compare=ComparePairing(blind=True, slot_a="sora"))
    pair = await runner.compare_pair(jobs[0])
    assert pair is not None and pair.compare.blind and [j.id for j in pair.jobs] == [j.id for j in jobs]
    assert pair.partner(jobs[0]) == jobs[1] and await runner.compare_pair(replace(jobs[0], compare_id=None)) is None


async def test_a_model_deleted_from_the_catalogue_refunds_waiting_jobs_and_finishes_running_ones(
        store: Store, parts, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """An operator deletes a model from MODELS_FILE while jobs use it: a job not yet at the provider is refunded
    (never submitted as some other model), one already rendering is followed to the end, and neither
    crashes what shows them (the cards, /jobs)."""
    from bot import catalogue, ui
    from bot.requests import request_from_json
    from tests.bot.test_catalogue import HELDOUT

    runner, provider, notifier, clock = parts
    models_file = tmp_path / "models.toml"
    models_file.write_text(HELDOUT)
    catalogue.install(catalogue.load(models_file))
    try:
        ids = []
        for _ in range(2):
            request = parse_request("kling", prompt="a fox", model_id="kling-heldout")
            [job] = await store.jobs.create([NewJob(user_id=1, model="kling", provider="scripted",
                                                    request_json=request.model_dump_json(), price=30)], now=clock.now)
            ids.append(job.id)
        [first] = await store.jobs.claim_due("w1", lease_seconds=300, now=clock.now, limit=1)
        assert first.id == ids[0]
        await runner.step(first)  # the first reaches the provider
        assert (await store.jobs.get(ids[0])).state is JobState.SUBMITTED
    finally:
        catalogue.install(None)  # the operator's edit: the shipped catalogue, without kling-heldout

    waiting, rendering = await store.jobs.get(ids[1]), await store.jobs.get(ids[0])
    shown = request_from_json(waiting.model, waiting.request_json)
    assert shown.label == "kling-heldout (no longer offered)"
    ui.job_embed(waiting, shown)  # a card or /jobs can still show it
    clock.now = rendering.next_run_at
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")]
    caplog.set_level("WARNING", logger="bot.runner")
    await step(runner, clock)
    waiting, rendering = await store.jobs.get(ids[1]), await store.jobs.get(ids[0])
    assert waiting.state is JobState.FAILED and waiting.error_code == "model_removed"
    assert "no longer offers the model `kling-heldout`" in ui.failure_words(waiting)
    assert [e.kind for e in await store.ledger.entries_for_job(waiting.id)] == [LedgerKind.RESERVE, LedgerKind.REFUND]
    assert provider.calls.count("submit") == 1
    assert rendering.state is JobState.DELIVERED
    assert any("kling-heldout is no longer in the model catalogue" in r.getMessage() for r in caplog.records)
