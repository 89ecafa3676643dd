"""Kling official adapter against the loopback fake: JWT, envelopes, endpoints, idempotent submit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.kling import KlingProvider, error_for_code
from bot.requests import parse_request
from tests.bot.providers.fakes import KLING_ACCESS, KLING_SECRET, VIDEO_BYTES, FakeProviders


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def provider(provider_settings: Settings):  # type: ignore[no-untyped-def]
    adapter = KlingProvider(provider_settings)
    yield adapter
    await adapter.aclose()


def decode(token: str) -> tuple[dict, dict]:
    header, claims, signature = token.split(".")
    expected = hmac.new(KLING_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(claims + "==")))


async def test_text2video_body_types_and_jwt(provider: KlingProvider, fake: FakeProviders) -> None:
    request = parse_request("kling", prompt="A fox", duration=10, aspect_ratio="1:1", negative_prompt="blur")
    task = await provider.submit(JobContext(job_id=42, request=request))
    assert task.startswith("text2video:")
    [seen] = fake.requests_to(r"/v1/videos/text2video$", "POST")
    body = seen.json
    assert body["duration"] == "10" and isinstance(body["duration"], str)
    assert (body["model_name"], body["prompt"], body["aspect_ratio"], body["mode"]) == \
        ("kling-v2-master", "A fox", "1:1", "std")
    assert body["negative_prompt"] == "blur" and body["external_task_id"] == "42"
    assert "cfg_scale" not in body  # v2.x official models don't take it
    header, claims = decode(seen.headers["Authorization"].removeprefix("Bearer "))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims["iss"] == KLING_ACCESS and claims["exp"] - claims["nbf"] == 1805


async def test_image2video_sends_raw_base64_and_v1_models_get_cfg(fake: FakeProviders, provider_settings: Settings,
                                                                  reference: Path) -> None:
    adapter = KlingProvider(provider_settings.model_copy(update={"kling_model": "kling-v1-6"}))
    request = parse_request("kling", prompt="p", cfg_scale=0.8).model_copy(update={"reference_image": str(reference)})
    task = await adapter.submit(JobContext(job_id=1, request=request))
    assert task.startswith("image2video:")
    [seen] = fake.requests_to(r"/v1/videos/image2video$", "POST")
    assert not seen.json["image"].startswith("data:")
    assert base64.b64decode(seen.json["image"]) == reference.read_bytes()
    assert seen.json["cfg_scale"] == 0.8
    assert adapter.notes(request) == []
    await adapter.aclose()


def test_cfg_note_when_the_model_ignores_it(provider: KlingProvider) -> None:
    assert "ignores CFG" in provider.notes(parse_request("kling", prompt="p", cfg_scale=0.9))[0]
    assert provider.notes(parse_request("kling", prompt="p")) == []


async def test_token_is_cached_and_refreshed(provider_settings: Settings) -> None:
    clock = Clock()
    adapter = KlingProvider(provider_settings, clock=clock)
    first = adapter.token()
    clock.now += 60
    assert adapter.token() == first
    clock.now += 1800 - 60 - 299
    assert adapter.token() != first  # under five minutes left: renewed
    await adapter.aclose()


async def test_full_path_and_download(provider: KlingProvider, tmp_path: Path) -> None:
    ctx = JobContext(job_id=1, request=parse_request("kling", prompt="ok"))
    task = await provider.submit(ctx)
    states = [(await provider.status(task, ctx)).state for _ in range(2)]
    assert states == [ProviderState.QUEUED, ProviderState.RUNNING]
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED
    assert await provider.fetch(done.result_url or "", tmp_path / "v.mp4", ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert not await provider.cancel(task, ctx)


async def test_retried_submit_finds_the_existing_task(provider: KlingProvider, fake: FakeProviders) -> None:
    ctx = JobContext(job_id=7, request=parse_request("kling", prompt="once"))
    first = await provider.submit(ctx)
    again = await provider.submit(ctx)  # e.g. after a crash before the task id was stored
    assert first == again
    assert len([t for t in fake.tasks.values() if t.get("external") == "7"]) == 1


async def test_retired_model_is_model_unavailable(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = KlingProvider(provider_settings.model_copy(update={"kling_model": "kling-v1"}))
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "kling-v1" in raised.value.message
    assert raised.value.provider_code == "1203"
    await adapter.aclose()


async def test_envelope_code_is_checked_even_on_http_200(provider: KlingProvider, fake: FakeProviders) -> None:
    fake.fail(r"/text2video$", status=200, body={"code": 1102, "message": "Account balance not enough",
                                                 "request_id": "r", "data": None})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.QUOTA_OR_BILLING


@pytest.mark.parametrize(
    ("code", "kind"),
    [(1000, ErrorKind.AUTH), (1004, ErrorKind.AUTH), (1100, ErrorKind.QUOTA_OR_BILLING),
     (1102, ErrorKind.QUOTA_OR_BILLING), (1103, ErrorKind.AUTH), (1200, ErrorKind.INVALID_REQUEST),
     (1201, ErrorKind.INVALID_REQUEST), (1203, ErrorKind.MODEL_UNAVAILABLE), (1301, ErrorKind.CONTENT_POLICY),
     (1302, ErrorKind.RATE_LIMITED), (1304, ErrorKind.RATE_LIMITED), (5000, ErrorKind.TRANSIENT),
     (5002, ErrorKind.TRANSIENT)],
)
def test_code_table(code: int, kind: ErrorKind) -> None:
    assert error_for_code(code, "m", model="kling-v2-master").kind is kind


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 429, "body": {"code": 1303, "message": "concurrency"}, "headers": {"Retry-After": "4"}},
         ErrorKind.RATE_LIMITED),
        ({"status": 500, "body": {"code": 5000, "message": "server"}}, ErrorKind.TRANSIENT),
        ({"status": 504, "garbage": True}, ErrorKind.TRANSIENT),
        ({"status": 400, "body": {"code": 1301, "message": "risk control"}}, ErrorKind.CONTENT_POLICY),
    ],
)
async def test_faults(provider: KlingProvider, fake: FakeProviders, fault: dict, kind: ErrorKind) -> None:
    fake.fail(r"/text2video$", **fault)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is kind
    if kind is ErrorKind.RATE_LIMITED:
        assert raised.value.retry_after == 4.0


async def test_bad_credentials_are_auth(fake: FakeProviders, provider_settings: Settings) -> None:
    adapter = KlingProvider(provider_settings.model_copy(update={"kling_secret_key": SecretStr("wrong-secret")}))
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="p")))
    assert raised.value.kind is ErrorKind.AUTH and "wrong-secret" not in str(raised.value)
    await adapter.aclose()


async def test_failed_unknown_and_missing_output(provider: KlingProvider) -> None:
    for prompt, check in (("flagged", "policy"), ("weird-status", "running"), ("no-output", "missing")):
        ctx = JobContext(job_id=hash(prompt) % 1000, request=parse_request("kling", prompt=prompt))
        task = await provider.submit(ctx)
        await provider.status(task, ctx)
        await provider.status(task, ctx)
        if check == "missing":
            with pytest.raises(ProviderError):
                await provider.status(task, ctx)
            continue
        status = await provider.status(task, ctx)
        if check == "policy":
            assert status.state is ProviderState.FAILED and status.error.kind is ErrorKind.CONTENT_POLICY  # type: ignore[union-attr]
        else:
            assert status.state is ProviderState.RUNNING
