"""Replicate adapter against the loopback fake: bodies (with types), auth, status mapping, every fault."""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.replicate import ReplicateProvider
from bot.requests import parse_request
from tests.bot.providers.fakes import REPLICATE_TOKEN, VIDEO_BYTES, FakeProviders

USER_KEY = "sk-user-secret-abcdefghijkl"


@pytest.fixture
async def provider(provider_settings: Settings) -> AsyncIterator[ReplicateProvider]:
    adapter = ReplicateProvider(provider_settings)
    yield adapter
    await adapter.aclose()


def kling_ctx(prompt: str = "ok", job_id: int = 1, **options: object) -> JobContext:
    return JobContext(job_id=job_id, request=parse_request("kling", prompt=prompt, **options))


async def run_until_done(provider: ReplicateProvider, ctx: JobContext, task: str, polls: int = 5) -> list:
    results = []
    for _ in range(polls):
        status = await provider.status(task, ctx)
        results.append(status)
        if status.state.finished:
            break
    return results


async def test_kling_input_field_by_field(provider: ReplicateProvider, fake: FakeProviders, reference: Path) -> None:
    request = parse_request("kling", prompt="A fox", duration=10, aspect_ratio="9:16", cfg_scale=0.3,
                            negative_prompt="blur").model_copy(update={"reference_image": str(reference)})
    assert await provider.submit(JobContext(job_id=1, request=request)) == "rp000001"
    [seen] = fake.requests_to(r"/predictions$", "POST")
    assert seen.path == "/replicate/v1/models/kwaivgi/kling-v2.0/predictions"
    assert seen.headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"
    assert seen.headers["Content-Type"] == "application/json"
    assert set(seen.json) == {"input"}  # no webhook without PUBLIC_BASE_URL
    data = seen.json["input"]
    # aspect_ratio is ignored with a start_image (the fitted frame sets the shape), so it is not sent
    assert set(data) == {"prompt", "duration", "cfg_scale", "negative_prompt", "start_image"}
    assert data["duration"] == 10 and type(data["duration"]) is int
    assert data["cfg_scale"] == 0.3 and type(data["cfg_scale"]) is float
    assert (data["prompt"], data["negative_prompt"]) == ("A fox", "blur")
    assert data["start_image"].startswith("data:image/png;base64,")
    assert base64.b64decode(data["start_image"].split(",", 1)[1]) == reference.read_bytes()


async def test_kling_optional_fields_are_left_out(provider: ReplicateProvider, fake: FakeProviders) -> None:
    await provider.submit(kling_ctx("p"))
    [seen] = fake.requests_to(r"/predictions$", "POST")
    assert seen.json["input"] == {"prompt": "p", "duration": 5, "aspect_ratio": "16:9", "cfg_scale": 0.5}


async def test_sora_standard_and_high_use_their_models(provider: ReplicateProvider, fake: FakeProviders,
                                                       reference: Path) -> None:
    await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="p", duration=8,
                                                                     orientation="portrait")))
    high = parse_request("sora", prompt="p", duration=12, resolution="high").model_copy(
        update={"reference_image": str(reference)})
    await provider.submit(JobContext(job_id=2, request=high, api_key=SecretStr(USER_KEY)))
    standard_seen, high_seen = fake.requests_to(r"/predictions$", "POST")
    assert standard_seen.path.endswith("/openai/sora-2/predictions")
    assert standard_seen.json["input"] == {"prompt": "p", "seconds": 8, "aspect_ratio": "portrait"}
    assert type(standard_seen.json["input"]["seconds"]) is int
    assert high_seen.path.endswith("/openai/sora-2-pro/predictions")
    data = high_seen.json["input"]
    assert (data["resolution"], data["seconds"], data["aspect_ratio"]) == ("high", 12, "landscape")
    assert data["input_reference"].startswith("data:image/png;base64,")
    assert data["openai_api_key"] == USER_KEY  # the user's own key, for this job only
    assert "openai_api_key" not in standard_seen.json["input"]


async def test_model_ids_come_from_settings(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={
        "kling_model": "acme/kling-next", "sora_model": "acme/sora-x", "sora_pro_model": "acme/sora-x-pro"}))
    assert adapter.model_id(parse_request("kling", prompt="p")) == "acme/kling-next"
    assert adapter.model_id(parse_request("sora", prompt="p")) == "acme/sora-x"
    assert adapter.model_id(parse_request("sora", prompt="p", resolution="high")) == "acme/sora-x-pro"
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and raised.value.model == "acme/kling-next"
    assert fake.requests_to(r"/models/acme/kling-next/predictions$", "POST")
    await adapter.aclose()


async def test_full_path_to_a_downloaded_file(provider: ReplicateProvider, fake: FakeProviders,
                                              tmp_path: Path) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    queued, running, done = await run_until_done(provider, ctx, task)
    assert queued.state is ProviderState.QUEUED
    assert running.state is ProviderState.RUNNING and running.progress == 80  # from the logs' percentage
    assert done.state is ProviderState.SUCCEEDED and done.result_url == f"{fake.base}/files/{task}.mp4"
    dest = tmp_path / "v.mp4"
    assert await provider.fetch(done.result_url, dest, ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert dest.read_bytes() == VIDEO_BYTES
    [download] = fake.requests_to(r"/files/")
    assert "Authorization" not in download.headers  # the token never goes to the output host


async def test_output_as_a_list_uses_the_first(provider: ReplicateProvider, fake: FakeProviders) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/predictions/", body={"id": task, "status": "succeeded", "output": ["https://x/a.mp4", "b"]},
              status=200)
    status = await provider.status(task, ctx)
    assert status.state is ProviderState.SUCCEEDED and status.result_url == "https://x/a.mp4"


async def test_webhook_is_requested_when_public(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"public_base_url": "https://bot.example/"}))
    await adapter.submit(kling_ctx("p"))
    [seen] = fake.requests_to(r"/predictions$", "POST")
    assert seen.json["webhook"] == "https://bot.example/webhooks/replicate"
    assert seen.json["webhook_events_filter"] == ["completed"]
    await adapter.aclose()


def in_two_minutes() -> str:
    return email.utils.formatdate(time.time() + 120, usegmt=True)


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        ({"status": 429, "body": {"detail": "Request was throttled."}, "headers": {"Retry-After": "7"}},
         ErrorKind.RATE_LIMITED, (7.0, 7.0)),
        ({"status": 429, "body": {"detail": "slow"}, "headers": {"Retry-After": "date"}},
         ErrorKind.RATE_LIMITED, (100.0, 120.0)),
        ({"status": 503, "body": {"detail": "down"}, "headers": {"Retry-After": "2"}}, ErrorKind.TRANSIENT, (2.0, 2.0)),
        ({"status": 500, "body": {"detail": "boom"}}, ErrorKind.TRANSIENT, None),
        ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 200, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 201, "body": {"status": "starting"}}, ErrorKind.TRANSIENT, None),  # no id
        ({"status": 401, "body": {"detail": "Invalid token."}}, ErrorKind.AUTH, None),
        ({"status": 403, "body": {"detail": "Forbidden"}}, ErrorKind.AUTH, None),
        ({"status": 402, "body": {"detail": "Payment required"}}, ErrorKind.QUOTA_OR_BILLING, None),
        ({"status": 422, "body": {"detail": "Input prompt was flagged as sensitive"}}, ErrorKind.CONTENT_POLICY, None),
        ({"status": 422, "body": {"detail": "duration must be 5 or 10"}}, ErrorKind.INVALID_REQUEST, None),
        ({"status": 400, "body": {"detail": "request timed out parsing"}}, ErrorKind.INVALID_REQUEST, None),
        ({"hang": 1.0}, ErrorKind.TRANSIENT, None),
        ({"reset": True}, ErrorKind.TRANSIENT, None),
    ],
)
async def test_submit_faults_map_to_the_taxonomy(fake: FakeProviders, provider_settings: Settings, fault: dict,
                                                 kind: ErrorKind, retry_after: tuple[float, float] | None) -> None:
    if fault.get("headers", {}).get("Retry-After") == "date":
        fault["headers"] = {"Retry-After": in_two_minutes()}
    adapter = ReplicateProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/predictions$", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    await adapter.aclose()
    assert raised.value.kind is kind
    if retry_after is not None:
        assert raised.value.retry_after is not None
        assert retry_after[0] <= raised.value.retry_after <= retry_after[1]


async def test_a_5xx_burst_then_success(provider: ReplicateProvider, fake: FakeProviders) -> None:
    fake.fail(r"/predictions$", status=503, times=2)
    for _ in range(2):
        with pytest.raises(ProviderError) as raised:
            await provider.submit(kling_ctx())
        assert raised.value.retryable
    assert await provider.submit(kling_ctx())
    assert len(fake.requests_to(r"/predictions$", "POST")) == 3


@pytest.mark.parametrize(
    ("fault", "kind"),
    [({"status": 429, "body": {"detail": "slow"}, "headers": {"Retry-After": "3"}}, ErrorKind.RATE_LIMITED),
     ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT), ({"hang": 1.0}, ErrorKind.TRANSIENT),
     ({"reset": True}, ErrorKind.TRANSIENT), ({"status": 401, "body": {"detail": "no"}}, ErrorKind.AUTH)],
)
async def test_status_faults(fake: FakeProviders, provider_settings: Settings, fault: dict, kind: ErrorKind) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    ctx = kling_ctx()
    task = await adapter.submit(ctx)
    fake.fail(r"/predictions/", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.status(task, ctx)
    await adapter.aclose()
    assert raised.value.kind is kind
    if kind is ErrorKind.RATE_LIMITED:
        assert raised.value.retry_after == 3.0


async def test_unknown_prediction_is_not_a_model_problem(provider: ReplicateProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.status("rp-missing", kling_ctx())
    assert raised.value.kind is ErrorKind.INVALID_REQUEST and raised.value.provider_code == "prediction_not_found"


async def test_connection_refused_is_transient(provider_settings: Settings) -> None:
    dead = ReplicateProvider(provider_settings.model_copy(update={"replicate_api_base": "http://127.0.0.1:9"}))
    with pytest.raises(ProviderError) as raised:
        await dead.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.TRANSIENT
    await dead.aclose()


async def test_retired_model_names_the_model(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"kling_model": "kwaivgi/kling-v1.0-gone"}))
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "kwaivgi/kling-v1.0-gone" in raised.value.message
    assert raised.value.model == "kwaivgi/kling-v1.0-gone"
    not_replicate = ReplicateProvider(provider_settings.model_copy(update={"kling_model": "kling-v2-master"}))
    with pytest.raises(ProviderError) as raised:
        await not_replicate.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "kling-v2-master" in raised.value.message
    await adapter.aclose()
    await not_replicate.aclose()


async def test_failed_prediction_policy_and_retired_model(provider: ReplicateProvider, fake: FakeProviders) -> None:
    flagged = kling_ctx("flagged thing")
    *_, failed = await run_until_done(provider, flagged, await provider.submit(flagged))
    assert failed.state is ProviderState.FAILED and failed.error and failed.error.kind is ErrorKind.CONTENT_POLICY
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/predictions/", status=200, body={"id": task, "status": "failed",
                                                  "error": "This model version has been deprecated"})
    status = await provider.status(task, ctx)
    assert status.state is ProviderState.FAILED and status.error is not None
    assert status.error.kind is ErrorKind.MODEL_UNAVAILABLE and "kwaivgi/kling-v2.0" in status.error.message
    fake.fail(r"/predictions/", status=200, body={"id": task, "status": "failed", "error": "CUDA out of memory"})
    assert (await provider.status(task, ctx)).error.kind is ErrorKind.TRANSIENT  # type: ignore[union-attr]


async def test_unknown_status_keeps_polling_and_logs_once(provider: ReplicateProvider,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    odd = kling_ctx("weird-status")
    task = await provider.submit(odd)
    with caplog.at_level(logging.WARNING, logger="bot.providers.replicate"):
        states = [s.state for s in await run_until_done(provider, odd, task, polls=6)]
    assert states == [ProviderState.QUEUED, ProviderState.RUNNING] + [ProviderState.RUNNING] * 4
    assert len([r for r in caplog.records if "pondering" in r.getMessage()]) == 1


async def test_missing_output_and_expired_output(provider: ReplicateProvider, tmp_path: Path) -> None:
    empty = kling_ctx("no-output")
    task = await provider.submit(empty)
    await provider.status(task, empty)
    await provider.status(task, empty)
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, empty)
    assert raised.value.kind is ErrorKind.TRANSIENT and raised.value.provider_code == "missing_output"
    gone = kling_ctx("expire")
    *_, done = await run_until_done(provider, gone, await provider.submit(gone))
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(done.result_url or "", tmp_path / "x.mp4", gone, max_bytes=10**6)
    assert raised.value.provider_code == "output_expired" and not raised.value.retryable
    assert raised.value.kind is ErrorKind.INVALID_REQUEST
    assert list(tmp_path.iterdir()) == []


async def test_download_cap_removes_the_partial_file(provider: ReplicateProvider, fake: FakeProviders,
                                                     tmp_path: Path) -> None:
    ctx = kling_ctx()
    with pytest.raises(ProviderError, match="larger") as raised:
        await provider.fetch(f"{fake.base}/files/big.mp4?bytes=2000000", tmp_path / "v.mp4", ctx, max_bytes=500_000)
    assert raised.value.provider_code == "too_large"
    assert list(tmp_path.iterdir()) == []


async def test_cancel(provider: ReplicateProvider, fake: FakeProviders) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    assert await provider.cancel(task, ctx)
    assert fake.requests_to(rf"/predictions/{task}/cancel$", "POST")
    assert (await provider.status(task, ctx)).state is ProviderState.CANCELED
    assert not await provider.cancel("rp-missing", ctx)


async def test_user_key_never_in_errors_or_logs(provider: ReplicateProvider, fake: FakeProviders, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="p"), api_key=SecretStr(USER_KEY))
    with caplog.at_level(logging.DEBUG):
        task = await provider.submit(ctx)
        *_, done = await run_until_done(provider, ctx, task)
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", ctx, max_bytes=10**6)
        fake.fail(r"/predictions$", status=400, body={"detail": f"bad openai_api_key {USER_KEY}"})
        with pytest.raises(ProviderError) as raised:
            await provider.submit(ctx)
        fake.fail(r"/predictions/", status=200, body={"id": task, "status": "failed",
                                                      "error": f"OpenAI said: invalid key {USER_KEY}"})
        failed = await provider.status(task, ctx)
    assert USER_KEY not in str(raised.value) and USER_KEY not in raised.value.message
    assert failed.error is not None and USER_KEY not in failed.error.message
    assert USER_KEY not in caplog.text and REPLICATE_TOKEN not in caplog.text
    assert USER_KEY not in repr(ctx)


async def test_verify_key_is_not_applicable(provider: ReplicateProvider, fake: FakeProviders) -> None:
    assert await provider.verify_key(SecretStr("anything"))
    assert fake.seen == []


async def test_injected_client_is_left_open(provider_settings: Settings) -> None:
    async with httpx.AsyncClient() as client:
        adapter = ReplicateProvider(provider_settings, client=client, base_url="http://127.0.0.1:1/")
        assert adapter.base == "http://127.0.0.1:1"
        await adapter.aclose()
        assert not client.is_closed


async def test_find_matches_input_across_pages_and_ignores_others(provider: ReplicateProvider,
                                                                 fake: FakeProviders) -> None:
    """The list has no inputs: candidates in the window are read one by one and matched exactly."""
    fake.page_size = 2
    since = time.time()
    ctx = JobContext(job_id=3, request=parse_request("kling", prompt="the one"), request_key="j3-k",
                     submitted_since=since)
    fake.fail(r"/predictions$", after=True, status=503, method="POST")  # created, answer lost
    with pytest.raises(ProviderError):
        await provider.submit(ctx)
    mine = next(iter(fake.tasks))
    for n in range(3):  # later predictions of other jobs push ours to the second page
        await provider.submit(kling_ctx(f"another {n}", job_id=10 + n))
    assert await provider.find("j3-k", ctx) == [mine]
    assert fake.requests_to(r"/predictions\?cursor=2$", "GET")  # it really paged
    other = JobContext(job_id=4, request=parse_request("kling", prompt="never sent"), request_key="j4-k",
                       submitted_since=since)
    assert await provider.find("j4-k", other) == []
    # Outside the window (submitted long after those predictions) nothing old is adopted.
    late = JobContext(job_id=3, request=ctx.request, request_key="j3-k", submitted_since=time.time() + 3600)
    assert await provider.find("j3-k", late) == []


async def test_find_by_webhook_marker_and_cancel(fake: FakeProviders, provider_settings: Settings) -> None:
    settings = provider_settings.model_copy(update={"public_base_url": "https://bot.example"})
    adapter = ReplicateProvider(settings)
    try:
        ctx = JobContext(job_id=5, request=parse_request("kling", prompt="same words"), request_key="j5-abc",
                         submitted_since=time.time())
        twin = JobContext(job_id=6, request=ctx.request, request_key="j6-def", submitted_since=time.time())
        first = await adapter.submit(ctx)
        second = await adapter.submit(ctx)  # a duplicate slipped through
        await adapter.submit(twin)  # same input, another job: its webhook marker differs
        assert fake.tasks[first]["webhook"] == "https://bot.example/webhooks/replicate?key=j5-abc"
        assert await adapter.find("j5-abc", ctx) == [first, second]
        assert adapter.can_cancel and await adapter.cancel(second, ctx)
        assert fake.tasks[second]["canceled"]
    finally:
        await adapter.aclose()


# -- sweep: the account's predictions since a time, one list request a page ----------------------------


def backdate(fake: FakeProviders, task: str, when: float) -> None:
    """Pretend the prediction was created at `when` (the list orders and dates by it)."""
    fake.tasks[task]["created"] = when


async def running_done_failed(provider: ReplicateProvider, failing_prompt: str) -> tuple[str, str, str]:
    """Three predictions for the sweep tests: one running (its logs at 80 %), one done, one failed (policy)."""
    running_ctx = kling_ctx("halfway")
    running = await provider.submit(running_ctx)
    for _ in range(2):  # queued, then running ("frame 2/3 80%")
        await provider.status(running, running_ctx)
    done_ctx = kling_ctx("fine")
    done = await provider.submit(done_ctx)
    await run_until_done(provider, done_ctx, done)
    failed_ctx = kling_ctx(failing_prompt)
    failed = await provider.submit(failed_ctx)
    await run_until_done(provider, failed_ctx, failed)
    return running, done, failed


async def test_sweep_maps_states_and_progress_from_the_list(provider: ReplicateProvider, fake: FakeProviders,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Each listed prediction's status maps as status() maps it; running ones carry the logs' percentage."""
    fake.replicate_list_detail = True
    since = time.time() - 1
    queued = await provider.submit(kling_ctx("just sent"))
    running, done, flagged = await running_done_failed(provider, "flagged thing")
    canceled = await provider.submit(kling_ctx("stop it"))
    await provider.cancel(canceled, kling_ctx())
    odd = await provider.submit(kling_ctx("odd"))
    fake.tasks[odd]["status"] = "dreaming"  # a status Replicate may add one day
    gets_before = len(fake.requests_to(r"/predictions", "GET"))
    with caplog.at_level(logging.WARNING, logger="bot.providers.replicate"):
        result = await provider.sweep(since, max_pages=3)
        again = await provider.sweep(since, max_pages=3)
    assert set(result.states) == {queued, running, done, flagged, canceled, odd}
    assert result.states[queued].state is ProviderState.QUEUED
    assert result.states[running].state is ProviderState.RUNNING and result.states[running].progress == 80
    assert result.states[done].state is ProviderState.SUCCEEDED and result.states[done].progress == 100
    failure = result.states[flagged].error
    assert result.states[flagged].state is ProviderState.FAILED
    assert failure is not None and failure.kind is ErrorKind.CONTENT_POLICY and failure.model == "kwaivgi/kling-v2.0"
    assert result.states[canceled].state is ProviderState.CANCELED
    assert result.states[odd].state is ProviderState.RUNNING
    assert len([r for r in caplog.records if "dreaming" in r.getMessage()]) == 1  # warned once, not per sweep
    assert again.states[odd].state is ProviderState.RUNNING
    assert result.pages == 1 and result.reaches_back_to == since  # the list ended: nothing older unseen
    # One list request answered for all six (no per-prediction look-ups).
    listed = fake.requests_to(r"/predictions", "GET")[gets_before:]
    assert [s.path for s in listed] == ["/replicate/v1/predictions"] * 2


async def test_sweep_without_logs_or_output_in_the_list(provider: ReplicateProvider, fake: FakeProviders) -> None:
    """Items as PROVIDERS.md confirms them (no logs, error, output): no progress, a success without a URL."""
    since = time.time() - 1
    running, done, failed = await running_done_failed(provider, "flagged again")
    states = (await provider.sweep(since, max_pages=1)).states
    assert states[running].state is ProviderState.RUNNING and states[running].progress is None
    assert states[done].state is ProviderState.SUCCEEDED and states[done].result_url is None
    # No reason in the item: none is made up (a guessed kind could refund what a retry would save).
    assert states[failed].state is ProviderState.FAILED and states[failed].error is None


async def test_sweep_stops_at_the_first_prediction_before_since(provider: ReplicateProvider,
                                                                fake: FakeProviders) -> None:
    fake.page_size = 2
    now = time.time()
    old = [await provider.submit(kling_ctx(f"old {n}")) for n in range(3)]
    new = [await provider.submit(kling_ctx(f"new {n}")) for n in range(3)]
    for n, task in enumerate(old):
        backdate(fake, task, now - 600 + n)
    for n, task in enumerate(new):
        backdate(fake, task, now + n)
    result = await provider.sweep(now - 1, max_pages=10)
    assert set(result.states) == set(new)
    # Page 1: new 2, new 1; page 2: new 0, old 2 (older than since: stop). Page 3 is never asked for.
    assert result.pages == 2 and len(fake.requests_to(r"/predictions", "GET")) == 2
    assert result.reaches_back_to == now - 1


async def test_sweep_max_pages_says_how_far_back_it_saw(provider: ReplicateProvider, fake: FakeProviders) -> None:
    fake.page_size = 2
    now = time.time()
    tasks = [await provider.submit(kling_ctx(f"p {n}")) for n in range(5)]
    for n, task in enumerate(tasks):
        backdate(fake, task, now - 50 + n * 10)  # oldest first: -50, -40, -30, -20, -10
    result = await provider.sweep(now - 3600, max_pages=2)
    assert set(result.states) == set(tasks[1:])  # the oldest was on page 3, never read
    assert result.pages == 2 and len(fake.requests_to(r"/predictions", "GET")) == 2
    assert result.reaches_back_to == pytest.approx(now - 40, abs=1e-5)  # the oldest read: older were not seen
    # With one more page the list ends there: it reached back to `since` after all.
    full = await provider.sweep(now - 3600, max_pages=3)
    assert set(full.states) == set(tasks) and full.pages == 3 and full.reaches_back_to == now - 3600


async def test_sweep_counts_undated_items_as_seen_and_keeps_the_token_home(
        provider: ReplicateProvider, fake: FakeProviders, caplog: pytest.LogCaptureFixture) -> None:
    """Items without a parsable created_at are in the result; a `next` link to another host is not followed."""
    before = time.time()
    fake.fail(r"/predictions$", method="GET", status=200, body={
        "next": "http://127.0.0.2:9/v1/predictions?cursor=abc", "previous": None,
        "results": [{"id": "rp-a", "status": "processing"}, {"id": "rp-b", "status": "succeeded", "created_at": "?"},
                    {"status": "failed"}, "junk"]})
    with caplog.at_level(logging.WARNING, logger="bot.providers.replicate"):
        result = await provider.sweep(before - 3600, max_pages=5)
    assert set(result.states) == {"rp-a", "rp-b"}
    assert len([r for r in caplog.records if "not followed" in r.getMessage()]) == 1
    assert result.states["rp-b"].state is ProviderState.SUCCEEDED
    # Nothing dated was read and the walk stopped early: it vouches only for what is newer than the sweep.
    assert result.pages == 1 and result.reaches_back_to >= before
    assert len(fake.requests_to(r"/predictions", "GET")) == 1


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [({"status": 429, "body": {"detail": "Request was throttled."}, "headers": {"Retry-After": "7"}},
      ErrorKind.RATE_LIMITED, 7.0),
     ({"status": 503, "body": {"detail": "down"}, "headers": {"Retry-After": "2"}}, ErrorKind.TRANSIENT, 2.0),
     ({"status": 500, "body": {"detail": "boom"}}, ErrorKind.TRANSIENT, None),
     ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT, None),
     ({"status": 200, "garbage": True}, ErrorKind.TRANSIENT, None),
     ({"hang": 1.0}, ErrorKind.TRANSIENT, None),
     ({"status": 401, "body": {"detail": "Invalid token."}}, ErrorKind.AUTH, None)],
)
async def test_sweep_faults_map_to_the_taxonomy(fake: FakeProviders, provider_settings: Settings, fault: dict,
                                                kind: ErrorKind, retry_after: float | None) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/predictions$", method="GET", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.sweep(time.time() - 60, max_pages=3)
    await adapter.aclose()
    assert raised.value.kind is kind and raised.value.retry_after == retry_after


async def test_sweep_fault_on_a_later_page(provider: ReplicateProvider, fake: FakeProviders) -> None:
    """A page that fails mid-walk fails the sweep (a partial answer would claim too much)."""
    fake.page_size = 1
    for n in range(2):
        await provider.submit(kling_ctx(f"p {n}"))
    fake.fail(r"/predictions$", method="GET", status=429, headers={"Retry-After": "4"}, skip=1)
    with pytest.raises(ProviderError) as raised:
        await provider.sweep(time.time() - 60, max_pages=3)
    assert raised.value.kind is ErrorKind.RATE_LIMITED and raised.value.retry_after == 4.0
    assert [s.path for s in fake.requests_to(r"/predictions", "GET")] == [
        "/replicate/v1/predictions", "/replicate/v1/predictions?cursor=1"]


async def test_sweep_never_shows_secrets(provider: ReplicateProvider, fake: FakeProviders,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Neither the token nor a user's OpenAI key (echoed in a failure) reaches a message or a log line."""
    fake.replicate_list_detail = True
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="p"), api_key=SecretStr(USER_KEY))
    task = await provider.submit(ctx)
    fake.tasks[task].update(status="failed", error=f"OpenAI said: invalid key {USER_KEY}")
    with caplog.at_level(logging.DEBUG):
        result = await provider.sweep(time.time() - 60, max_pages=1)
        fake.fail(r"/predictions$", method="GET", status=500, body={"detail": f"bad token {REPLICATE_TOKEN}"})
        with pytest.raises(ProviderError) as raised:
            await provider.sweep(time.time() - 60, max_pages=1)
    failure = result.states[task].error
    assert failure is not None and "invalid key" in failure.message and USER_KEY not in failure.message
    assert REPLICATE_TOKEN not in str(raised.value) and "bad token" in raised.value.message
    assert USER_KEY not in caplog.text and REPLICATE_TOKEN not in caplog.text
