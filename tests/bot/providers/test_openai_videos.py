"""OpenAI Videos adapter against the loopback fake."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.requests import parse_request
from tests.bot.providers.fakes import OPENAI_KEY, VIDEO_BYTES, FakeProviders, image_size


@pytest.fixture
async def provider(provider_settings: Settings):  # type: ignore[no-untyped-def]
    adapter = OpenAIVideosProvider(provider_settings)
    yield adapter
    await adapter.aclose()


async def test_json_submit_uses_string_seconds_and_size(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="Waves", duration=8,
                                                                     orientation="portrait")))
    [seen] = fake.requests_to(r"/videos$", "POST")
    assert seen.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.json == {"prompt": "Waves", "model": "sora-2", "seconds": "8", "size": "720x1280"}


async def test_multipart_reference_is_resized_to_the_output(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                            reference: Path) -> None:
    request = parse_request("sora", prompt="p", resolution="high").model_copy(
        update={"reference_image": str(reference)})
    await provider.submit(JobContext(job_id=1, request=request))
    [seen] = fake.requests_to(r"/videos$", "POST")
    assert seen.form["model"] == "sora-2-pro" and seen.form["seconds"] == "4" and seen.form["size"] == "1792x1024"
    assert image_size(seen.form["input_reference"]["bytes"]) == (1792, 1024)


async def test_full_path_with_poll_hint_download_and_delete(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                            tmp_path: Path) -> None:
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="ok"))
    task = await provider.submit(ctx)
    running = await provider.status(task, ctx)
    assert running.state is ProviderState.RUNNING and running.progress == 50 and running.poll_after == 1.5
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED and done.result_url and done.result_url.endswith(
        f"/videos/{task}/content?variant=video")
    assert await provider.fetch(done.result_url, tmp_path / "v.mp4", ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert fake.deleted == [task]


async def test_own_key_is_used_for_that_job_only(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    own = "sk-user-own-0123456789"
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="mine"), api_key=SecretStr(own))
    task = await provider.submit(ctx)
    await provider.submit(JobContext(job_id=2, request=parse_request("sora", prompt="operator's")))
    mine, theirs = fake.requests_to(r"/videos$", "POST")
    assert mine.headers["Authorization"] == f"Bearer {own}"
    assert theirs.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    fake.fail(r"/videos/", status=400, body={"error": {"message": f"key {own} is bad", "code": "x"}})
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        await provider.status(task, ctx)
    assert own not in str(raised.value) and own not in caplog.text


async def test_retired_service_reads_as_model_unavailable(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    fake.openai_retired = True
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="p")))
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "sora-2" in raised.value.message
    fake.openai_retired = False
    fake.fail(r"/videos$", status=410, body={"error": {"message": "This endpoint has been shut down"}})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="p")))
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 429, "body": {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
          "headers": {"Retry-After": "3"}}, ErrorKind.RATE_LIMITED),
        ({"status": 429, "body": {"error": {"message": "quota", "code": "insufficient_quota"}}},
         ErrorKind.QUOTA_OR_BILLING),
        ({"status": 401, "body": {"error": {"message": "bad key", "code": "invalid_api_key"}}}, ErrorKind.AUTH),
        ({"status": 500, "body": {"error": {"message": "oops"}}}, ErrorKind.TRANSIENT),
        ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT),
        ({"status": 400, "body": {"error": {"message": "bad size", "code": "invalid_value"}}},
         ErrorKind.INVALID_REQUEST),
    ],
)
async def test_faults(provider: OpenAIVideosProvider, fake: FakeProviders, fault: dict, kind: ErrorKind) -> None:
    fake.fail(r"/videos$", **fault)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="p")))
    assert raised.value.kind is kind
    if kind is ErrorKind.RATE_LIMITED:
        assert raised.value.retry_after == 3.0


async def test_moderation_at_submit_and_after_render(provider: OpenAIVideosProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("sora", prompt="flagged")))
    assert raised.value.kind is ErrorKind.CONTENT_POLICY
    ctx = JobContext(job_id=2, request=parse_request("sora", prompt="flagged late"))
    task = await provider.submit(ctx)
    await provider.status(task, ctx)
    failed = await provider.status(task, ctx)
    assert failed.state is ProviderState.FAILED and failed.error and failed.error.kind is ErrorKind.CONTENT_POLICY


async def test_unknown_status_and_expired_content(provider: OpenAIVideosProvider, tmp_path: Path) -> None:
    odd = JobContext(job_id=1, request=parse_request("sora", prompt="weird-status"))
    task = await provider.submit(odd)
    for _ in range(3):
        assert (await provider.status(task, odd)).state is ProviderState.RUNNING
    gone = JobContext(job_id=2, request=parse_request("sora", prompt="expire"))
    task = await provider.submit(gone)
    await provider.status(task, gone)
    done = await provider.status(task, gone)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", gone, max_bytes=10**6)
    assert raised.value.provider_code == "output_expired"


async def test_verify_key(provider: OpenAIVideosProvider) -> None:
    assert await provider.verify_key(SecretStr("sk-good-123456789"))
    assert not await provider.verify_key(SecretStr("sk-bad-123456789"))
