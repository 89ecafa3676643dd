"""Kling official adapter against the loopback fake: JWT, envelopes, endpoints, idempotent submit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.kling import KlingProvider, callback_token, error_for_code
from bot.requests import parse_request
from tests.bot.providers.fakes import KLING_ACCESS, KLING_SECRET, VIDEO_BYTES, FakeProviders


class Clock:
    """An injectable clock a test moves by hand."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def provider(provider_settings: Settings) -> AsyncIterator[KlingProvider]:
    adapter = KlingProvider(provider_settings)
    yield adapter
    await adapter.aclose()


def kling_ctx(prompt: str = "ok", job_id: int = 1, **options: object) -> JobContext:
    return JobContext(job_id=job_id, request=parse_request("kling", prompt=prompt, **options),
                      request_key=f"j{job_id}-feedface")


def decode(token: str, secret: str = KLING_SECRET) -> tuple[dict, dict]:
    """Split a JWT and verify its HS256 signature with the secret."""
    header, claims, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)), expected)
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(claims)))


def bearer(seen_headers: dict[str, str]) -> str:
    return seen_headers["Authorization"].removeprefix("Bearer ")


async def test_text2video_body_types_and_jwt(fake: FakeProviders, provider_settings: Settings) -> None:
    clock = Clock()
    adapter = KlingProvider(provider_settings, clock=clock)
    request = parse_request("kling", prompt="A fox", duration=10, aspect_ratio="1:1", negative_prompt="blur")
    task = await adapter.submit(JobContext(job_id=42, request=request, request_key="j42-0123abcd"))
    await adapter.aclose()
    assert task.startswith("text2video:")
    [seen] = fake.requests_to(r"/v1/videos/text2video$", "POST")
    assert seen.path == "/kling/v1/videos/text2video"
    body = seen.json
    assert body == {"model_name": "kling-v2-master", "prompt": "A fox", "negative_prompt": "blur", "mode": "std",
                    "aspect_ratio": "1:1", "duration": "10", "external_task_id": "j42-0123abcd"}
    assert type(body["duration"]) is str and type(body["external_task_id"]) is str
    assert "cfg_scale" not in body and not adapter.cfg_applied(request)  # v2.x official models don't take it
    header, claims = decode(bearer(seen.headers))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {"iss": KLING_ACCESS, "exp": int(clock.now) + 1800, "nbf": int(clock.now) - 5}
    with pytest.raises(AssertionError):
        decode(bearer(seen.headers), secret="another-secret")  # the check above can fail


async def test_image2video_sends_raw_base64_and_v1_models_get_cfg(fake: FakeProviders, provider_settings: Settings,
                                                                  reference: Path) -> None:
    adapter = KlingProvider(provider_settings.model_copy(update={"kling_model": "kling-v1-6"}))
    request = parse_request("kling", prompt="p", cfg_scale=0.8).model_copy(update={"reference_image": str(reference)})
    assert adapter.cfg_applied(request)
    task = await adapter.submit(JobContext(job_id=1, request=request))
    assert task.startswith("image2video:")
    [seen] = fake.requests_to(r"/v1/videos/image2video$", "POST")
    assert not seen.json["image"].startswith("data:")
    assert base64.b64decode(seen.json["image"], validate=True) == reference.read_bytes()
    assert seen.json["cfg_scale"] == 0.8 and type(seen.json["cfg_scale"]) is float
    assert seen.json["model_name"] == "kling-v1-6"
    assert adapter.notes(request) == []
    await adapter.status(task, JobContext(job_id=1, request=request))
    assert fake.requests_to(rf"/v1/videos/image2video/{task.split(':')[1]}$", "GET")  # polled on its own endpoint
    await adapter.aclose()


def test_cfg_note_when_the_model_ignores_it(provider: KlingProvider) -> None:
    assert "ignores CFG" in provider.notes(parse_request("kling", prompt="p", cfg_scale=0.9))[0]
    assert provider.notes(parse_request("kling", prompt="p")) == []


async def test_callback_url_when_public(fake: FakeProviders, provider_settings: Settings) -> None:
    settings = provider_settings.model_copy(update={"public_base_url": "https://bot.example"})
    adapter = KlingProvider(settings)
    await adapter.submit(kling_ctx())
    [seen] = fake.requests_to(r"/text2video$", "POST")
    assert seen.json["callback_url"] == f"https://bot.example/webhooks/kling?token={callback_token(settings)}"
    await adapter.aclose()


async def test_token_is_cached_and_refreshed(fake: FakeProviders, provider_settings: Settings) -> None:
    clock = Clock(float(int(time.time()) - 1600))  # so the refreshed token is valid for the fake's real clock too
    adapter = KlingProvider(provider_settings, clock=clock)
    ctx = kling_ctx()
    task = await adapter.submit(ctx)
    clock.now += 60
    await adapter.status(task, ctx)
    clock.now += 1800 - 60 - 301  # five minutes and a second left: still cached
    await adapter.status(task, ctx)
    clock.now += 2  # under five minutes: renewed
    await adapter.status(task, ctx)
    tokens = [bearer(s.headers) for s in fake.requests_to(r"/kling/")]
    assert tokens[0] == tokens[1] == tokens[2] != tokens[3]
    _, claims = decode(tokens[3])
    assert claims["exp"] == int(clock.now) + 1800 and claims["nbf"] == int(clock.now) - 5
    await adapter.aclose()


async def test_full_path_and_download(provider: KlingProvider, fake: FakeProviders, tmp_path: Path) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    states = [(await provider.status(task, ctx)).state for _ in range(2)]
    assert states == [ProviderState.QUEUED, ProviderState.RUNNING]
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED and done.result_url == f"{fake.base}/files/{task.split(':')[1]}.mp4"
    dest = tmp_path / "v.mp4"
    assert await provider.fetch(done.result_url, dest, ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert dest.read_bytes() == VIDEO_BYTES
    [download] = fake.requests_to(r"/files/")
    assert "Authorization" not in download.headers  # no JWT to the CDN
    assert not await provider.cancel(task, ctx)


async def test_retried_submit_finds_the_existing_task(provider: KlingProvider, fake: FakeProviders) -> None:
    ctx = kling_ctx("once", job_id=7)
    first = await provider.submit(ctx)
    again = await provider.submit(ctx)  # e.g. after a crash before the task id was stored
    assert first == again
    assert len([t for t in fake.tasks.values() if t.get("external") == "j7-feedface"]) == 1
    assert fake.requests_to(r"/v1/videos/text2video/j7-feedface$", "GET")


async def test_find_by_request_key_never_by_bare_job_id(provider: KlingProvider, fake: FakeProviders,
                                                        reference: Path) -> None:
    """After a database reset job 7 of a new install has another key: it must not adopt the old task."""
    old_install = await provider.submit(kling_ctx("old user's video", job_id=7))
    assert await provider.find("j7-feedface", kling_ctx(job_id=7)) == [old_install]
    assert await provider.find("j7-newinstall", kling_ctx(job_id=7)) == []
    assert await provider.find("7", kling_ctx(job_id=7)) == []
    image_ctx = JobContext(job_id=8, request=parse_request("kling", prompt="x", reference_image=str(reference)),
                           request_key="j8-feedface")
    task = await provider.submit(image_ctx)
    assert task.startswith("image2video:") and await provider.find("j8-feedface", image_ctx) == [task]
    assert [t["polls"] for t in fake.tasks.values()] == [0, 0]  # lookups are not status polls


async def test_find_when_the_answer_to_the_create_was_lost(provider: KlingProvider, fake: FakeProviders) -> None:
    fake.fail(r"/v1/videos/text2video$", after=True, reset=True)  # Kling made the task; we never read the id
    ctx = kling_ctx("lost answer", job_id=9)
    with pytest.raises(ProviderError):
        await provider.submit(ctx)
    [task_id] = fake.tasks
    assert await provider.find("j9-feedface", ctx) == [f"text2video:{task_id}"]


async def test_other_1201_errors_are_not_duplicates(provider: KlingProvider, fake: FakeProviders) -> None:
    fake.fail(r"/text2video$", status=400, body={"code": 1201, "message": "prompt is too long"})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.INVALID_REQUEST and raised.value.provider_code == "1201"
    assert not fake.requests_to(r"/text2video/", "GET")


async def test_retired_model_is_model_unavailable(fake: FakeProviders, provider_settings: Settings) -> None:
    fake.kling_live_models.discard("kling-v2-master")  # retired around 2026-09
    adapter = KlingProvider(provider_settings)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "kling-v2-master" in raised.value.message
    assert raised.value.provider_code == "1203" and raised.value.model == "kling-v2-master"
    await adapter.aclose()


async def test_envelope_code_is_checked_even_on_http_200(provider: KlingProvider, fake: FakeProviders) -> None:
    fake.fail(r"/text2video$", status=200, body={"code": 1102, "message": "Account balance not enough",
                                                 "request_id": "r", "data": None})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.QUOTA_OR_BILLING
    fake.fail(r"/text2video$", status=200, body={"code": "1301", "message": "risk", "data": None})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.CONTENT_POLICY  # a code sent as a string still counts
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/text2video/", status=200, body={"code": 5001, "message": "busy", "data": {"task_id": "x"}})
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, ctx)
    assert raised.value.kind is ErrorKind.TRANSIENT


@pytest.mark.parametrize(
    ("code", "kind"),
    [(1000, ErrorKind.AUTH), (1002, ErrorKind.AUTH), (1004, ErrorKind.AUTH), (1100, ErrorKind.QUOTA_OR_BILLING),
     (1101, ErrorKind.QUOTA_OR_BILLING), (1102, ErrorKind.QUOTA_OR_BILLING), (1103, ErrorKind.AUTH),
     (1200, ErrorKind.INVALID_REQUEST), (1201, ErrorKind.INVALID_REQUEST), (1202, ErrorKind.INVALID_REQUEST),
     (1203, ErrorKind.MODEL_UNAVAILABLE), (1301, ErrorKind.CONTENT_POLICY), (1302, ErrorKind.RATE_LIMITED),
     (1303, ErrorKind.RATE_LIMITED), (1304, ErrorKind.RATE_LIMITED), (5000, ErrorKind.TRANSIENT),
     (5001, ErrorKind.TRANSIENT), (5002, ErrorKind.TRANSIENT)],
)
def test_code_table(code: int, kind: ErrorKind) -> None:
    error = error_for_code(code, "m", model="kling-v2-master")
    assert error.kind is kind and error.provider_code == str(code)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 429, "body": {"code": 1303, "message": "concurrency"}, "headers": {"Retry-After": "4"}},
         ErrorKind.RATE_LIMITED),
        ({"status": 429, "body": {"code": 1102, "message": "out of credits"}}, ErrorKind.QUOTA_OR_BILLING),
        ({"status": 403, "body": {"code": 1103, "message": "no permission"}}, ErrorKind.AUTH),
        ({"status": 500, "body": {"code": 5000, "message": "server"}}, ErrorKind.TRANSIENT),
        ({"status": 503, "body": {"code": 5001, "message": "unavailable"}}, ErrorKind.TRANSIENT),
        ({"status": 504, "garbage": True}, ErrorKind.TRANSIENT),
        ({"status": 200, "garbage": True}, ErrorKind.TRANSIENT),
        ({"status": 200, "body": {"code": 0, "message": "ok", "data": None}}, ErrorKind.TRANSIENT),
        ({"status": 400, "body": {"code": 1301, "message": "risk control"}}, ErrorKind.CONTENT_POLICY),
        ({"status": 404, "garbage": True}, ErrorKind.MODEL_UNAVAILABLE),
        ({"hang": 1.0}, ErrorKind.TRANSIENT),
        ({"reset": True}, ErrorKind.TRANSIENT),
    ],
)
async def test_submit_faults(fake: FakeProviders, provider_settings: Settings, fault: dict, kind: ErrorKind) -> None:
    adapter = KlingProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/text2video$", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    await adapter.aclose()
    assert raised.value.kind is kind
    if kind is ErrorKind.RATE_LIMITED:
        assert raised.value.retry_after == 4.0


async def test_bad_credentials_are_auth(fake: FakeProviders, provider_settings: Settings,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from pydantic import SecretStr

    adapter = KlingProvider(provider_settings.model_copy(update={"kling_secret_key": SecretStr("wrong-secret")}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        await adapter.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.AUTH and raised.value.provider_code == "1002"
    assert "wrong-secret" not in str(raised.value) and "wrong-secret" not in caplog.text
    await adapter.aclose()
    missing = KlingProvider(provider_settings.model_copy(update={"kling_access_key": None}))
    with pytest.raises(ProviderError) as raised:
        await missing.submit(kling_ctx())
    assert raised.value.kind is ErrorKind.AUTH
    await missing.aclose()


async def test_failed_unknown_and_missing_output(provider: KlingProvider, caplog: pytest.LogCaptureFixture) -> None:
    flagged = kling_ctx("flagged", job_id=1)
    task = await provider.submit(flagged)
    for _ in range(3):
        status = await provider.status(task, flagged)
    assert status.state is ProviderState.FAILED and status.error is not None
    assert status.error.kind is ErrorKind.CONTENT_POLICY  # "risk control" in task_status_msg
    odd = kling_ctx("weird-status", job_id=2)
    task = await provider.submit(odd)
    with caplog.at_level(logging.WARNING, logger="bot.providers.kling"):
        states = [(await provider.status(task, odd)).state for _ in range(5)]
    assert states == [ProviderState.QUEUED] + [ProviderState.RUNNING] * 4
    assert caplog.text.count("meditating") == 1
    empty = kling_ctx("no-output", job_id=3)
    task = await provider.submit(empty)
    await provider.status(task, empty)
    await provider.status(task, empty)
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, empty)
    assert raised.value.provider_code == "missing_output"


async def test_failed_task_message_without_policy_words_is_invalid(provider: KlingProvider,
                                                                   fake: FakeProviders) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/text2video/", status=200, body={"code": 0, "message": "SUCCEED", "data": {
        "task_id": task.split(":")[1], "task_status": "failed", "task_status_msg": "image resolution too small"}})
    status = await provider.status(task, ctx)
    assert status.state is ProviderState.FAILED and status.error.kind is ErrorKind.INVALID_REQUEST  # type: ignore[union-attr]


async def test_an_id_without_its_kind_polls_text2video(provider: KlingProvider, fake: FakeProviders) -> None:
    ctx = kling_ctx()
    task = await provider.submit(ctx)
    bare = task.split(":", 1)[1]
    assert (await provider.status(bare, ctx)).state is ProviderState.QUEUED
    assert fake.requests_to(rf"/v1/videos/text2video/{bare}$", "GET")


async def test_expired_output_and_cap(provider: KlingProvider, fake: FakeProviders, tmp_path: Path) -> None:
    gone = kling_ctx("expire")
    task = await provider.submit(gone)
    for _ in range(3):
        done = await provider.status(task, gone)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", gone, max_bytes=10**6)
    assert raised.value.provider_code == "output_expired" and not raised.value.retryable
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(f"{fake.base}/files/big.mp4?bytes=2000000", tmp_path / "v.mp4", gone, max_bytes=10**5)
    assert raised.value.provider_code == "too_large"
    assert list(tmp_path.iterdir()) == []
