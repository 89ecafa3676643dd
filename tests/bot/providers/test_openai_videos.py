"""OpenAI Videos adapter against the loopback fake (request bodies checked against the official schema)."""

from __future__ import annotations

import email.utils
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.requests import parse_request
from tests.bot.providers.fakes import OPENAI_KEY, VIDEO_BYTES, FakeProviders, image_size

OWN_KEY = "sk-user-own-0123456789"
# CreateVideoJsonBody from specs/openai-videos-openapi.json (copied: the spec file lives outside the repo),
# made strict about extra fields so a misspelt name fails here.
CREATE_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "enum": ["sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06",
                                             "sora-2-2025-12-08"]},
        "prompt": {"type": "string", "minLength": 1, "maxLength": 32000},
        "seconds": {"type": "string", "enum": ["4", "8", "12"]},
        "size": {"type": "string", "enum": ["720x1280", "1280x720", "1024x1792", "1792x1024"]},
    },
}


@pytest.fixture
async def provider(provider_settings: Settings) -> AsyncIterator[OpenAIVideosProvider]:
    adapter = OpenAIVideosProvider(provider_settings)
    yield adapter
    await adapter.aclose()


def sora_ctx(prompt: str = "ok", job_id: int = 1, api_key: str | None = None, **options: object) -> JobContext:
    return JobContext(job_id=job_id, request=parse_request("sora", prompt=prompt, **options),
                      api_key=SecretStr(api_key) if api_key else None)


async def test_json_submit_uses_string_seconds_and_size(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    assert await provider.submit(sora_ctx("Waves", duration=8, orientation="portrait")) == "video_000001"
    [seen] = fake.requests_to(r"/videos$", "POST")
    assert seen.path == "/openai/v1/videos"
    assert seen.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.json == {"prompt": "Waves", "model": "sora-2", "seconds": "8", "size": "720x1280"}
    assert type(seen.json["seconds"]) is str
    jsonschema.validate(seen.json, CREATE_JSON_SCHEMA)


async def test_multipart_reference_is_fitted_to_the_output(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                           reference: Path) -> None:
    request = parse_request("sora", prompt="p", resolution="high").model_copy(
        update={"reference_image": str(reference)})  # 640x480: not the output size
    await provider.submit(JobContext(job_id=1, request=request))
    [seen] = fake.requests_to(r"/videos$", "POST")
    assert seen.headers["Content-Type"].startswith("multipart/form-data")
    assert {k: seen.form[k] for k in ("prompt", "model", "seconds", "size")} == \
        {"prompt": "p", "model": "sora-2-pro", "seconds": "4", "size": "1792x1024"}
    part = seen.form["input_reference"]
    assert part["content_type"] == "image/png" and image_size(part["bytes"]) == (1792, 1024)


async def test_reference_of_the_right_size_is_kept(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "fitted.png"
    Image.new("RGB", (720, 1280), (200, 10, 10)).save(path)
    request = parse_request("sora", prompt="p", orientation="portrait").model_copy(
        update={"reference_image": str(path)})
    await provider.submit(JobContext(job_id=1, request=request))
    [seen] = fake.requests_to(r"/videos$", "POST")
    with Image.open(io.BytesIO(seen.form["input_reference"]["bytes"])) as sent:
        assert sent.size == (720, 1280) and sent.getpixel((5, 5)) == (200, 10, 10)


async def test_unreadable_reference_is_invalid(provider: OpenAIVideosProvider, tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"not an image")
    request = parse_request("sora", prompt="p").model_copy(update={"reference_image": str(path)})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(JobContext(job_id=1, request=request))
    assert raised.value.kind is ErrorKind.INVALID_REQUEST


async def test_model_ids_come_from_settings(provider_settings: Settings) -> None:
    adapter = OpenAIVideosProvider(provider_settings.model_copy(update={"sora_model": "sora-2-2025-12-08",
                                                                       "sora_pro_model": "sora-2-pro-2025-10-06"}))
    assert adapter.model_id(parse_request("sora", prompt="p")) == "sora-2-2025-12-08"
    assert adapter.model_id(parse_request("sora", prompt="p", resolution="high")) == "sora-2-pro-2025-10-06"
    await adapter.aclose()


async def test_full_path_with_poll_hint_download_and_delete(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                            tmp_path: Path) -> None:
    fake.openai_poll_after_ms = 1500
    ctx = sora_ctx()
    task = await provider.submit(ctx)
    queued = await provider.status(task, ctx)
    assert queued.state is ProviderState.QUEUED and queued.poll_after == 1.5
    running = await provider.status(task, ctx)
    assert running.state is ProviderState.RUNNING and running.progress == 50 and running.poll_after == 1.5
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED
    assert done.result_url == f"{fake.base}/openai/v1/videos/{task}/content?variant=video"
    dest = tmp_path / "v.mp4"
    assert await provider.fetch(done.result_url, dest, ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    assert dest.read_bytes() == VIDEO_BYTES
    [content] = fake.requests_to(r"/content")
    assert content.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert fake.deleted == [task]
    assert not await provider.cancel(task, ctx)  # no cancel endpoint


async def test_delete_can_be_disabled_and_its_failure_is_only_logged(
    fake: FakeProviders, provider_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keep = OpenAIVideosProvider(provider_settings.model_copy(update={"openai_delete_after_download": False}))
    ctx = sora_ctx()
    task = await keep.submit(ctx)
    for _ in range(3):
        await keep.status(task, ctx)
    await keep.fetch(f"{fake.base}/openai/v1/videos/{task}/content?variant=video", tmp_path / "a.mp4", ctx,
                     max_bytes=10**6)
    assert fake.deleted == [] and not fake.requests_to(r"/videos/", "DELETE")
    await keep.aclose()
    remover = OpenAIVideosProvider(provider_settings)
    fake.fail(r"/videos/", method="DELETE", status=500)
    with caplog.at_level(logging.WARNING, logger="bot.providers.openai_videos"):
        size = await remover.fetch(f"{fake.base}/openai/v1/videos/{task}/content?variant=video", tmp_path / "b.mp4",
                                   ctx, max_bytes=10**6)
    assert size == len(VIDEO_BYTES) and "could not delete" in caplog.text
    fake.fail(r"/videos/", method="DELETE", reset=True)
    assert await remover.fetch(f"{fake.base}/openai/v1/videos/{task}/content?variant=video", tmp_path / "c.mp4",
                               ctx, max_bytes=10**6) == len(VIDEO_BYTES)
    await remover.aclose()


async def test_own_key_is_used_for_that_job_only(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mine = sora_ctx("mine", api_key=OWN_KEY)
    theirs = sora_ctx("operator's", job_id=2)
    with caplog.at_level(logging.DEBUG):
        task = await provider.submit(mine)
        other = await provider.submit(theirs)
        for _ in range(3):
            done = await provider.status(task, mine)
            await provider.status(other, theirs)
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", mine, max_bytes=10**6)
        fake.fail(r"/videos/", status=400, body={"error": {"message": f"key {OWN_KEY} is bad", "code": "x"}})
        with pytest.raises(ProviderError) as raised:
            await provider.status(task, mine)
    for seen in fake.seen:
        is_mine = f"/videos/{task}" in seen.path or (
            seen.json is not None and seen.json.get("prompt") == "mine")
        assert seen.headers["Authorization"] == f"Bearer {OWN_KEY if is_mine else OPENAI_KEY}", seen.path
    assert OWN_KEY not in str(raised.value) and OWN_KEY not in raised.value.message
    assert OWN_KEY not in caplog.text and OPENAI_KEY not in caplog.text


async def test_rejected_keys(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    rejected = {"status": 401, "body": {"error": {"message": "Incorrect API key provided: sk-abc***xyz",
                                                  "code": "invalid_api_key"}}}
    fake.fail(r"/videos$", **rejected)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx())
    assert raised.value.kind is ErrorKind.AUTH  # the operator's key: alert the operator
    fake.fail(r"/videos$", **rejected)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx(api_key=OWN_KEY))
    assert raised.value.kind is ErrorKind.INVALID_REQUEST and raised.value.provider_code == "user_key_rejected"


async def test_retired_service_reads_as_model_unavailable(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    fake.openai_retired = True
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx("p", resolution="high"))
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and raised.value.model == "sora-2-pro"
    assert "sora-2-pro" in raised.value.message and raised.value.provider_code == "model_not_found"
    fake.openai_retired = False
    fake.fail(r"/videos$", status=410, body={"error": {"message": "This endpoint has been shut down"}})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and "sora-2" in raised.value.message
    fake.fail(r"/videos$", status=404, garbage=True)  # an HTML 404 page from a gateway
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx())
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE
    ctx = sora_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/videos/", status=404, body={"error": {"message": "Not found", "code": None}})
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, ctx)
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE and raised.value.model == "sora-2"
    fake.fail(r"/videos$", status=400, body={"error": {"message": "The model sora-2 has been deprecated",
                                                       "code": "invalid_request"}})
    with pytest.raises(ProviderError) as raised:
        await provider.submit(ctx)
    assert raised.value.kind is ErrorKind.MODEL_UNAVAILABLE


def http_date(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        ({"status": 429, "body": {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
          "headers": {"Retry-After": "3"}}, ErrorKind.RATE_LIMITED, (3.0, 3.0)),
        ({"status": 429, "body": {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
          "headers": {"Retry-After": "date"}}, ErrorKind.RATE_LIMITED, (40.0, 60.0)),
        ({"status": 429, "body": {"error": {"message": "quota", "code": "insufficient_quota"}}},
         ErrorKind.QUOTA_OR_BILLING, None),
        ({"status": 401, "body": {"error": {"message": "bad key", "code": "invalid_api_key"}}}, ErrorKind.AUTH, None),
        ({"status": 403, "body": {"error": {"message": "no access", "code": None}}}, ErrorKind.AUTH, None),
        ({"status": 500, "body": {"error": {"message": "oops"}}}, ErrorKind.TRANSIENT, None),
        ({"status": 503, "body": {"error": {"message": "busy"}}, "headers": {"Retry-After": "5"}},
         ErrorKind.TRANSIENT, (5.0, 5.0)),
        ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 200, "garbage": True}, ErrorKind.TRANSIENT, None),
        ({"status": 400, "body": {"error": {"message": "bad size", "code": "invalid_value"}}},
         ErrorKind.INVALID_REQUEST, None),
        ({"status": 400, "body": {"error": {"message": "Prompt violates our content policy", "code": None}}},
         ErrorKind.CONTENT_POLICY, None),
        ({"hang": 1.0}, ErrorKind.TRANSIENT, None),
        ({"reset": True}, ErrorKind.TRANSIENT, None),
    ],
)
async def test_submit_faults(fake: FakeProviders, provider_settings: Settings, fault: dict, kind: ErrorKind,
                             retry_after: tuple[float, float] | None) -> None:
    if fault.get("headers", {}).get("Retry-After") == "date":
        fault["headers"] = {"Retry-After": http_date(60)}
    adapter = OpenAIVideosProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/videos$", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(sora_ctx())
    await adapter.aclose()
    assert raised.value.kind is kind
    if retry_after is not None:
        assert raised.value.retry_after is not None
        assert retry_after[0] <= raised.value.retry_after <= retry_after[1]


async def test_moderation_at_submit_and_after_render(provider: OpenAIVideosProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.submit(sora_ctx("flagged"))
    assert raised.value.kind is ErrorKind.CONTENT_POLICY and raised.value.provider_code == "moderation_blocked"
    ctx = sora_ctx("flagged late", job_id=2)
    task = await provider.submit(ctx)
    for _ in range(3):
        failed = await provider.status(task, ctx)
    assert failed.state is ProviderState.FAILED and failed.error and failed.error.kind is ErrorKind.CONTENT_POLICY


async def test_failure_codes(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    ctx = sora_ctx()
    task = await provider.submit(ctx)
    for code, kind in (("server_error", ErrorKind.TRANSIENT), ("model_not_found", ErrorKind.MODEL_UNAVAILABLE),
                       ("invalid_prompt", ErrorKind.INVALID_REQUEST)):
        fake.fail(r"/videos/", status=200, body={"id": task, "status": "failed", "progress": 0,
                                                 "error": {"code": code, "message": "it failed"}})
        status = await provider.status(task, ctx)
        assert status.state is ProviderState.FAILED and status.error is not None
        assert (status.error.kind, status.error.provider_code) == (kind, code)


async def test_retry_after_on_a_poll_is_the_hint(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    ctx = sora_ctx()
    task = await provider.submit(ctx)
    fake.fail(r"/videos/", status=200, body={"id": task, "status": "in_progress", "progress": 120},
              headers={"Retry-After": "12"})
    status = await provider.status(task, ctx)
    assert status.state is ProviderState.RUNNING and status.poll_after == 12.0 and status.progress == 100


async def test_unknown_status_and_expired_content(provider: OpenAIVideosProvider, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    odd = sora_ctx("weird-status")
    task = await provider.submit(odd)
    with caplog.at_level(logging.WARNING, logger="bot.providers.openai_videos"):
        states = [(await provider.status(task, odd)).state for _ in range(5)]
    assert states == [ProviderState.QUEUED] + [ProviderState.RUNNING] * 4
    assert caplog.text.count("thinking") == 1
    gone = sora_ctx("expire", job_id=2)
    task = await provider.submit(gone)
    for _ in range(3):
        done = await provider.status(task, gone)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(done.result_url or "", tmp_path / "v.mp4", gone, max_bytes=10**6)
    assert raised.value.provider_code == "output_expired" and not raised.value.retryable
    assert list(tmp_path.iterdir()) == []


async def test_download_cap_and_no_key_to_other_hosts(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                      tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(f"{fake.base}/files/big.mp4?bytes=3000000", tmp_path / "v.mp4", sora_ctx(),
                             max_bytes=1_000_000)
    assert raised.value.provider_code == "too_large" and list(tmp_path.iterdir()) == []
    [big] = fake.requests_to(r"/files/big")
    assert "Authorization" not in big.headers  # not our base URL: no key


async def test_verify_key(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    assert await provider.verify_key(SecretStr("sk-good-123456789"))
    assert not await provider.verify_key(SecretStr("sk-bad-123456789"))
    assert [s.headers["Authorization"] for s in fake.requests_to(r"/models$", "GET")] == \
        ["Bearer sk-good-123456789", "Bearer sk-bad-123456789"]
    fake.fail(r"/models$", status=500)
    with pytest.raises(ProviderError) as raised:
        await provider.verify_key(SecretStr("sk-good-123456789"))
    assert raised.value.kind is ErrorKind.TRANSIENT and "sk-good" not in str(raised.value)


async def test_find_matches_prompt_model_size_and_seconds(provider: OpenAIVideosProvider,
                                                          fake: FakeProviders) -> None:
    fake.page_size = 2
    since = time.time()
    ctx = JobContext(job_id=1, request=parse_request("sora", prompt="a calm lake", duration=8), request_key="j1-k",
                     submitted_since=since)
    fake.fail(r"/videos$", after=True, hang=5.0, method="POST")  # accepted; the answer never comes in time
    with pytest.raises(ProviderError):
        await provider.submit(ctx)
    [mine] = fake.tasks
    await provider.submit(sora_ctx("a calm lake", duration=4))  # same prompt, other length: not ours
    await provider.submit(sora_ctx("something else", duration=8))
    await provider.submit(sora_ctx("and more", duration=8))
    assert await provider.find("j1-k", ctx) == [mine]
    assert fake.requests_to(r"/videos\?.*after=", "GET")  # paged back to it
    assert not provider.can_cancel
    late = JobContext(job_id=1, request=ctx.request, request_key="j1-k", submitted_since=time.time() + 3600)
    assert await provider.find("j1-k", late) == []


# -- sweep: the operator's videos since a time, one list request a page -------------------------------


def backdate(fake: FakeProviders, task: str, when: float) -> None:
    """Pretend the video was created at `when` (the list orders by it and reports its whole second)."""
    fake.tasks[task]["created"] = when


def list_requests(fake: FakeProviders) -> list[Any]:
    """The list requests (`GET /videos?…`), not the per-video polls."""
    return fake.requests_to(r"/videos(\?|$)", "GET")


async def test_sweep_maps_states_and_progress_with_the_operator_key(provider: OpenAIVideosProvider,
                                                                    fake: FakeProviders,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    since = time.time() - 1
    queued = await provider.submit(sora_ctx("just sent"))
    running_ctx = sora_ctx("halfway")
    running = await provider.submit(running_ctx)
    for _ in range(2):  # queued, then in_progress at 50 %
        await provider.status(running, running_ctx)
    done_ctx = sora_ctx("fine")
    done = await provider.submit(done_ctx)
    for _ in range(3):
        await provider.status(done, done_ctx)
    failed_ctx = sora_ctx("flagged late")
    failed = await provider.submit(failed_ctx)
    for _ in range(3):
        await provider.status(failed, failed_ctx)
    odd = await provider.submit(sora_ctx("odd"))
    fake.tasks[odd].update(status="rendering", progress=30)  # a status the API may add one day
    with caplog.at_level(logging.WARNING, logger="bot.providers.openai_videos"):
        result = await provider.sweep(since, max_pages=3)
        again = await provider.sweep(since, max_pages=3)
    assert provider.can_sweep
    assert set(result.states) == {queued, running, done, failed, odd}
    assert result.states[queued].state is ProviderState.QUEUED and result.states[queued].progress == 0
    assert result.states[running].state is ProviderState.RUNNING and result.states[running].progress == 50
    assert result.states[done].state is ProviderState.SUCCEEDED and result.states[done].progress == 100
    failure = result.states[failed].error
    assert result.states[failed].state is ProviderState.FAILED
    assert failure is not None and failure.kind is ErrorKind.CONTENT_POLICY
    assert failure.provider_code == "moderation_blocked" and failure.model == "sora-2"
    assert result.states[odd].state is ProviderState.RUNNING and again.states[odd].state is ProviderState.RUNNING
    assert len([r for r in caplog.records if "rendering" in r.getMessage()]) == 1
    assert result.pages == 1 and result.reaches_back_to == since
    listed = list_requests(fake)
    assert [s.path for s in listed] == ["/openai/v1/videos?limit=100&order=desc"] * 2
    assert {s.headers["Authorization"] for s in listed} == {f"Bearer {OPENAI_KEY}"}


async def test_sweep_uses_only_the_operator_key(fake: FakeProviders, provider_settings: Settings) -> None:
    """Own-key jobs live in their user's project: the sweep never sends a user's key, and without an
    operator key there is nothing to sweep."""
    adapter = OpenAIVideosProvider(provider_settings)
    await adapter.submit(sora_ctx("mine", api_key=OWN_KEY))
    await adapter.sweep(time.time() - 60, max_pages=1)
    [listed] = list_requests(fake)
    assert listed.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    await adapter.aclose()
    keyless = OpenAIVideosProvider(provider_settings.model_copy(update={"openai_api_key": None}))
    assert not keyless.can_sweep
    with pytest.raises(ProviderError) as raised:
        await keyless.sweep(time.time() - 60, max_pages=1)
    assert raised.value.kind is ErrorKind.AUTH
    assert len(list_requests(fake)) == 1
    await keyless.aclose()


async def test_sweep_pages_with_after_and_stops_before_since(provider: OpenAIVideosProvider,
                                                             fake: FakeProviders) -> None:
    fake.page_size = 2
    second = float(int(time.time()))
    old = [await provider.submit(sora_ctx(f"old {n}")) for n in range(3)]
    new = [await provider.submit(sora_ctx(f"new {n}")) for n in range(3)]
    for n, task in enumerate(old):
        backdate(fake, task, second - 600 + n)
    for n, task in enumerate(new):
        backdate(fake, task, second + 10 + n)
    edge = await provider.submit(sora_ctx("same second"))
    backdate(fake, edge, second + 0.2)  # listed as `second`: it may be after `since` within that second
    result = await provider.sweep(second + 0.5, max_pages=10)
    assert set(result.states) == {*new, edge}
    # Page 1: new 2, new 1; page 2: new 0, edge; page 3: old 2 (a second wholly before since): stop.
    assert result.pages == 3 and result.reaches_back_to == second + 0.5
    paths = [s.path for s in list_requests(fake)]
    assert paths == ["/openai/v1/videos?limit=100&order=desc", f"/openai/v1/videos?limit=100&order=desc&after={new[1]}",
                     f"/openai/v1/videos?limit=100&order=desc&after={edge}"]


async def test_sweep_max_pages_says_how_far_back_it_saw(provider: OpenAIVideosProvider, fake: FakeProviders) -> None:
    fake.page_size = 2
    now = float(int(time.time()))
    tasks = [await provider.submit(sora_ctx(f"p {n}")) for n in range(5)]
    for n, task in enumerate(tasks):
        backdate(fake, task, now - 50 + n * 10 + 0.5)  # oldest first: -49.5 … -9.5, listed as whole seconds
    result = await provider.sweep(now - 3600, max_pages=2)
    assert set(result.states) == set(tasks[1:]) and result.pages == 2
    # The oldest read was listed as now-40: another video of that second may be on the next page, so the
    # sweep vouches only from the second after it.
    assert result.reaches_back_to == now - 39
    full = await provider.sweep(now - 3600, max_pages=3)
    assert set(full.states) == set(tasks) and full.pages == 3 and full.reaches_back_to == now - 3600
    assert len(list_requests(fake)) == 5


async def test_sweep_undated_items_and_a_page_without_last_id(provider: OpenAIVideosProvider,
                                                              fake: FakeProviders) -> None:
    before = time.time()
    fake.fail(r"/videos$", method="GET", status=200, body={
        "object": "list", "first_id": None, "last_id": None, "has_more": True,
        "data": [{"id": "video_a", "status": "in_progress", "progress": 140},
                 {"id": "video_b", "status": "queued", "progress": 0, "created_at": "yesterday"},
                 {"status": "completed"}, 7]}, times=2)
    cut = await provider.sweep(before - 3600, max_pages=1)
    assert set(cut.states) == {"video_a", "video_b"} and cut.states["video_a"].progress == 100
    assert cut.pages == 1 and cut.reaches_back_to >= before  # nothing dated read: vouches for nothing older
    await provider.sweep(before - 3600, max_pages=2)
    assert list_requests(fake)[-1].path.endswith("&after=video_b")  # continues after the last item it read


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [({"status": 429, "body": {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
       "headers": {"Retry-After": "3"}}, ErrorKind.RATE_LIMITED, 3.0),
     ({"status": 429, "body": {"error": {"message": "quota", "code": "insufficient_quota"}}},
      ErrorKind.QUOTA_OR_BILLING, None),
     ({"status": 401, "body": {"error": {"message": "bad key", "code": "invalid_api_key"}}}, ErrorKind.AUTH, None),
     ({"status": 500, "body": {"error": {"message": "oops"}}}, ErrorKind.TRANSIENT, None),
     ({"status": 503, "body": {"error": {"message": "busy"}}, "headers": {"Retry-After": "5"}},
      ErrorKind.TRANSIENT, 5.0),
     ({"status": 502, "garbage": True}, ErrorKind.TRANSIENT, None),
     ({"status": 404, "body": {"error": {"message": "Not found", "code": None}}}, ErrorKind.MODEL_UNAVAILABLE, None),
     ({"hang": 1.0}, ErrorKind.TRANSIENT, None)],
)
async def test_sweep_faults(fake: FakeProviders, provider_settings: Settings, fault: dict, kind: ErrorKind,
                            retry_after: float | None) -> None:
    adapter = OpenAIVideosProvider(provider_settings.model_copy(update={"provider_timeout_seconds": 0.3}))
    fake.fail(r"/videos$", method="GET", **fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.sweep(time.time() - 60, max_pages=2)
    await adapter.aclose()
    assert raised.value.kind is kind and raised.value.retry_after == retry_after
    if kind is ErrorKind.MODEL_UNAVAILABLE:
        assert "Videos API is not available" in raised.value.message


async def test_sweep_fault_on_a_later_page_and_no_secrets(provider: OpenAIVideosProvider, fake: FakeProviders,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    fake.page_size = 1
    for n in range(2):
        await provider.submit(sora_ctx(f"p {n}"))
    first = next(iter(fake.tasks))
    fake.tasks[first].update(status="failed", error={"code": None, "message": f"key {OPENAI_KEY} was revoked"})
    fake.fail(r"/videos$", method="GET", status=500, skip=1,
              body={"error": {"message": f"upstream rejected {OPENAI_KEY}", "code": "server_error"}})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderError) as raised:
            await provider.sweep(time.time() - 60, max_pages=3)
        result = await provider.sweep(time.time() - 60, max_pages=3)
    assert raised.value.kind is ErrorKind.TRANSIENT and "upstream rejected" in raised.value.message
    assert OPENAI_KEY not in str(raised.value)
    failure = result.states[first].error
    assert failure is not None and "was revoked" in failure.message and OPENAI_KEY not in failure.message
    assert OPENAI_KEY not in caplog.text
