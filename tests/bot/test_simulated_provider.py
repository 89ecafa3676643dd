"""The simulated provider renders real MP4s on the models' timetable and fails on request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.simulated import SimulatedProvider
from bot.render import probe_video
from bot.requests import parse_request


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(video_dir=tmp_path / "videos", simulated_speed=1.0, simulated_fps=3)


async def run_to_end(provider: SimulatedProvider, clock: Clock, ctx: JobContext, dest: Path) -> Path:
    task = await provider.submit(ctx)
    first = await provider.status(task, ctx)
    assert first.state is ProviderState.QUEUED and first.progress == 0
    low, high = provider.expected_seconds(ctx.request)
    clock.now += low * 0.75
    middle = await provider.status(task, ctx)
    assert middle.state in (ProviderState.QUEUED, ProviderState.RUNNING) and 0 < (middle.progress or 0) < 100
    clock.now += high
    done = await provider.status(task, ctx)
    assert done.state is ProviderState.SUCCEEDED and done.result_url
    size = await provider.fetch(done.result_url, dest, ctx, max_bytes=50_000_000)
    assert size == dest.stat().st_size > 0
    return dest


@pytest.mark.parametrize(
    ("model", "options", "size", "audio"),
    [
        ("kling", {"duration": 5, "aspect_ratio": "16:9"}, (1280, 720), False),
        ("kling", {"duration": 10, "aspect_ratio": "9:16"}, (720, 1280), False),
        ("kling", {"aspect_ratio": "1:1"}, (720, 720), False),
        ("sora", {"duration": 4}, (1280, 720), True),
        ("sora", {"duration": 8, "resolution": "high", "orientation": "portrait"}, (1024, 1792), True),
    ],
)
async def test_renders_exact_size_duration_and_streams(
    settings: Settings, tmp_path: Path, model: str, options: dict, size: tuple[int, int], audio: bool
) -> None:
    clock = Clock()
    provider = SimulatedProvider(settings, clock=clock)
    request = parse_request(model, prompt="A red fox runs through fresh snow — ☃ עברית\u200b", **options)
    out = await run_to_end(provider, clock, JobContext(job_id=1, request=request), tmp_path / "out.mp4")
    info = probe_video(out)
    assert (info.width, info.height) == size
    assert info.duration_seconds == pytest.approx(request.seconds, abs=1 / 3)
    assert info.video_codec == "h264"
    assert info.has_audio is audio
    assert info.audio_codec == ("aac" if audio else None)


async def test_first_frame_shows_the_reference_image(settings: Settings, tmp_path: Path) -> None:
    import av

    reference = tmp_path / "red.png"
    Image.new("RGB", (1280, 720), (255, 0, 0)).save(reference)
    clock = Clock()
    provider = SimulatedProvider(settings, clock=clock)
    request = parse_request("kling", prompt="p").model_copy(update={"reference_image": str(reference)})
    out = await run_to_end(provider, clock, JobContext(job_id=2, request=request), tmp_path / "o.mp4")
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_image()
    r, g, b = frame.resize((1, 1)).getpixel((0, 0))
    assert r > 180 and g < 80 and b < 80


async def test_restart_continues_a_task_and_renders_once(settings: Settings, tmp_path: Path) -> None:
    clock = Clock()
    request = parse_request("kling", prompt="p")
    ctx = JobContext(job_id=3, request=request)
    task = await SimulatedProvider(settings, clock=clock).submit(ctx)
    clock.now += 10_000
    reborn = SimulatedProvider(settings, clock=clock)  # a new process over the same work dir
    results = await asyncio.gather(*(reborn.status(task, ctx) for _ in range(4)))
    assert {r.state for r in results} == {ProviderState.SUCCEEDED}
    assert len({r.result_url for r in results}) == 1


@pytest.mark.parametrize("kind", ["invalid_request", "quota_or_billing", "model_unavailable", "auth",
                                  "rate_limited", "transient"])
async def test_submit_failures_by_keyword(settings: Settings, kind: str) -> None:
    provider = SimulatedProvider(settings, clock=Clock())
    ctx = JobContext(job_id=4, request=parse_request("sora", prompt=f"a cat [fail:{kind}]"))
    with pytest.raises(ProviderError) as raised:
        await provider.submit(ctx)
    assert raised.value.kind is ErrorKind(kind)
    if kind == "model_unavailable":
        assert "sim-sora-2" in raised.value.message
    if kind == "rate_limited":
        assert raised.value.retry_after and raised.value.retry_after > 0


async def test_content_policy_fails_after_the_wait(settings: Settings) -> None:
    clock = Clock()
    provider = SimulatedProvider(settings, clock=clock)
    ctx = JobContext(job_id=5, request=parse_request("kling", prompt="[fail:content_policy] x"))
    task = await provider.submit(ctx)
    assert (await provider.status(task, ctx)).state is ProviderState.QUEUED
    clock.now += 10_000
    status = await provider.status(task, ctx)
    assert status.state is ProviderState.FAILED and status.error and status.error.kind is ErrorKind.CONTENT_POLICY


async def test_fail_once_then_succeed_and_setting_applies_to_all(settings: Settings, tmp_path: Path) -> None:
    provider = SimulatedProvider(settings, clock=Clock())
    ctx = JobContext(job_id=6, request=parse_request("kling", prompt="[fail-once:transient] x"))
    with pytest.raises(ProviderError):
        await provider.submit(ctx)
    assert await provider.submit(ctx)
    failing = SimulatedProvider(settings.model_copy(update={"simulated_fail": "auth"}), clock=Clock())
    with pytest.raises(ProviderError) as raised:
        await failing.submit(JobContext(job_id=7, request=parse_request("kling", prompt="x")))
    assert raised.value.kind is ErrorKind.AUTH


async def test_expired_output_cancel_and_byte_cap(settings: Settings, tmp_path: Path) -> None:
    clock = Clock()
    provider = SimulatedProvider(settings, clock=clock)
    expired = JobContext(job_id=8, request=parse_request("kling", prompt="[fail:expired] x"))
    task = await provider.submit(expired)
    clock.now += 10_000
    status = await provider.status(task, expired)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(status.result_url or "", tmp_path / "x.mp4", expired, max_bytes=10**9)
    assert raised.value.provider_code == "output_expired"
    capped = JobContext(job_id=9, request=parse_request("kling", prompt="y"))
    task = await provider.submit(capped)
    clock.now += 10_000
    status = await provider.status(task, capped)
    with pytest.raises(ProviderError, match="larger"):
        await provider.fetch(status.result_url or "", tmp_path / "y.mp4", capped, max_bytes=1000)
    assert not (tmp_path / "y.mp4").exists() and not list(tmp_path.glob(".*part"))
    canceled = JobContext(job_id=10, request=parse_request("kling", prompt="z"))
    task = await provider.submit(canceled)
    assert await provider.cancel(task, canceled)
    assert (await provider.status(task, canceled)).state is ProviderState.CANCELED


def test_wait_follows_models_md_scaled_by_speed(settings: Settings) -> None:
    fast = SimulatedProvider(settings.model_copy(update={"simulated_speed": 0.01}))
    assert fast.expected_seconds(parse_request("kling", prompt="p")) == pytest.approx((1.2, 1.8))
    assert fast.model_id(parse_request("sora", prompt="p", resolution="high")) == "sim-sora-2-pro"
