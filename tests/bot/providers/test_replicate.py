"""Replicate adapter against the loopback fake: bodies, auth, status mapping, every fault."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.replicate import ReplicateProvider
from bot.requests import parse_request
from tests.bot.providers.fakes import REPLICATE_TOKEN, VIDEO_BYTES, FakeProviders


@pytest.fixture
async def provider(provider_settings: Settings):  # type: ignore[no-untyped-def]
    adapter = ReplicateProvider(provider_settings)
    yield adapter
    await adapter.aclose()


async def finish(provider: ReplicateProvider, ctx: JobContext, task: str) -> list[ProviderState]:
    states = []
    for _ in range(5):
        status = await provider.status(task, ctx)
        states.append(status.state)
        if status.state.finished:
            break
    return states


async def test_kling_input_field_by_field(provider: ReplicateProvider, fake: FakeProviders, reference: Path) -> None:
    request = parse_request("kling", prompt="A fox", duration=10, aspect_ratio="9:16", cfg_scale=0.3,
                            negative_prompt="blur").model_copy(update={"reference_image": str(reference)})
    await provider.submit(JobContext(job_id=1, request=request))
    [seen] = fake.requests_to(r"/predictions$", "POST")
    assert seen.path == "/replicate/v1/models/kwaivgi/kling-v2.0/predictions"
    assert seen.headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"
    data = seen.json["input"]
    assert data["duration"] == 10 and isinstance(data["duration"], int)
    assert (data["prompt"], data["aspect_ratio"], data["cfg_scale"], data["negative_prompt"]) == \
        ("A fox", "9:16", 0.3, "blur")
    assert data["start_image"].startswith("data:image/png;base64,")
    assert base64.b64decode(data["start_image"].split(",", 1)[1]) == reference.read_bytes()
    assert "webhook" not in seen.json


async def test_sora_standard_and_high_use_their_models(provider: ReplicateProvider, fake: FakeProviders) -> None:
    await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="p", duration=8,
                                                                     orientation="portrait")))
    await provider.submit(JobContext(job_id=2, request=parse_request("sora", prompt="p", duration=12,
                                                                     resolution="high"),
                                     api_key=SecretStr("sk-user-own-key-123456")))
    standard, high = fake.requests_to(r"/predictions$", "POST")
    assert standard.path.endswith("/openai/sora-2/predictions")
    assert standard.json["input"] == {"prompt": "p", "seconds": 8, "aspect_ratio": "portrait"}
    assert high.path.endswith("/openai/sora-2-pro/predictions")
    assert high.json["input"]["resolution"] == "high" and high.json["input"]["seconds"] == 12
    assert high.json["input"]["openai_api_key"] == "sk-user-own-key-123456"


async def test_full_path_to_a_downloaded_file(provider: ReplicateProvider, tmp_path: Path) -> None:
    ctx = JobContext(job_id=1, request=parse_request("kling", prompt="ok"))
    task = await provider.submit(ctx)
    first = await provider.status(task, ctx)
    assert first.state is ProviderState.RUNNING and first.progress == 40
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED and done.result_url
    assert await provider.fetch(done.result_url, tmp_path / "v.mp4", ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert (tmp_path / "v.mp4").read_bytes() == VIDEO_BYTES


async def test_webhook_is_requested_when_public(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"public_base_url": "https://bot.example"}))
    await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    [seen] = fake.requests_to(r"/predictions$", "POST")
    assert seen.json["webhook"] == "https://bot.example/webhooks/replicate"
    assert seen.json["webhook_events_filter"] == ["completed"]
    await adapter.aclose()


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        ({"status": 429, "body": {"detail": "Request was throttled."}, "headers": {"Retry-After": "7"}},
         ErrorKind.RATE_LIMITED, 7.0),
        ({"status": 429, "body": {"detail": "slow"}, "headers": {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}},
         ErrorKind.RATE_LIMITED, None),
        ({"status": 503, "body": {"detail": "down"}}, ErrorKind.TRANSIENT, None),
        ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 200, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 401, "body": {"detail": "Invalid token."}}, ErrorKind.AUTH, None),
        ({"status": 402, "body": {"detail": "Payment required"}}, ErrorKind.QUOTA_OR_BILLING, None),
        ({"status": 422, "body": {"detail": "Input prompt was flagged as sensitive"}}, ErrorKind.CONTENT_POLICY, None),
        ({"status": 422, "body": {"detail": "duration must be 5 or 10"}}, ErrorKind.INVALID_REQUEST, None),
    ],
)
async def test_submit_faults_map_to_the_taxonomy(provider: ReplicateProvider, fake: FakeProviders,
                                                 fault: dict, kind: ErrorKind, retry_after: float | None) -> None:
    fake.fail(r"/predictions$", **fault)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is kind
    if retry_after is not None:
        assert raised.value.retry_after == retry_after
    elif kind is ErrorKind.RATE_LIMITED:
        assert (raised.value.retry_after or 0) > 1000  # an HTTP date far in the future


async def test_timeouts_and_resets_are_transient(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/predictions$", hang=2.0)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.TRANSIENT and "in time" in raised.value.message
    await adapter.aclose()
    dead = ReplicateProvider(provider_settings.model_copy(update={"replicate_api_base": "http://127.0.0.1:9"}))
    with pytest.raises(ProviderError) as raised:
        await dead.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.TRANSIENT
    await dead.aclose()


async def test_retired_model_names_the_model(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = ReplicateProvider(provider_settings.model_copy(update={"kling_model": "kwaivgi/kling-v1.0-gone"}))
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "kwaivgi/kling-v1.0-gone" in raised.value.message
    await adapter.aclose()


async def test_failed_unknown_missing_and_expired_outputs(provider: ReplicateProvider, tmp_path: Path) -> None:
    flagged = JobContext(job_id=1, request=parse_request("kling", prompt="flagged thing"))
    task = await provider.submit(flagged)
    await provider.status(task, flagged)
    failed = await provider.status(task, flagged)
    assert failed.state is ProviderState.FAILED and failed.error and failed.error.kind is ErrorKind.CONTENT_POLICY
    odd = JobContext(job_id=2, request=parse_request("kling", prompt="weird-status"))
    task = await provider.submit(odd)
    assert await finish(provider, odd, task) == [ProviderState.RUNNING] * 5
    empty = JobContext(job_id=3, request=parse_request("kling", prompt="no-output"))
    task = await provider.submit(empty)
    await provider.status(task, empty)
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, empty)
    assert raised.value.kind is ErrorKind.TRANSIENT
    gone = JobContext(job_id=4, request=parse_request("kling", prompt="expire"))
    task = await provider.submit(gone)
    await provider.status(task, gone)
    done = await provider.status(task, gone)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(done.result_url or "", tmp_path / "x.mp4", gone, max_bytes=10**6)
    assert raised.value.provider_code == "output_expired" and not raised.value.retryable


async def test_download_cap_removes_the_partial_file(provider: ReplicateProvider, tmp_path: Path) -> None:
    ctx = JobContext(job_id=1, request=parse_request("kling", prompt="ok"))
    task = await provider.submit(ctx)
    await provider.status(task, ctx)
    done = await provider.status(task, ctx)
    with pytest.raises(ProviderError, match="larger"):
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", ctx, max_bytes=100)
    assert list(tmp_path.iterdir()) == []


async def test_cancel(provider: ReplicateProvider, fake: FakeProviders) -> None:
    ctx = JobContext(job_id=1, request=parse_request("kling", prompt="ok"))
    task = await provider.submit(ctx)
    assert await provider.cancel(task, ctx)
    assert (await provider.status(task, ctx)).state is ProviderState.CANCELED


async def test_user_key_never_in_errors_or_logs(provider: ReplicateProvider, fake: FakeProviders,
                                               caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-user-secret-abcdefghijkl"
    fake.fail(r"/predictions$", status=400, body={"detail": f"bad openai_api_key {key}"})
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="p"), api_key=SecretStr(key))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        await provider.submit(ctx)
    assert key not in str(raised.value) and key not in raised.value.message
    assert key not in caplog.text
    assert key not in repr(ctx)
