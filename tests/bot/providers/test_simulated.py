"""The simulated provider: the models' timetable, restart safety, one render, and every failure keyword.

Time is an injected clock, so no test waits for the simulated delay; renders use 2 fps.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image, ImageStat

import bot.providers.simulated as simulated
from bot.config import Settings
from bot.media import probe
from bot.providers.base import ErrorKind, JobContext, ProviderError, ProviderState
from bot.providers.simulated import SimulatedProvider, sweep_work_dir
from bot.requests import AnyRequest, parse_request

SPEED = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(video_dir=tmp_path / "videos", simulated_speed=SPEED, simulated_fps=2, simulated_fail=None)


@pytest.fixture
def provider(settings: Settings, clock: Clock) -> SimulatedProvider:
    return SimulatedProvider(settings, clock=clock)


def ctx_for(job_id: int, model: str = "kling", prompt: str = "A fox in the snow.", **options: Any) -> JobContext:
    return JobContext(job_id=job_id, request=parse_request(model, prompt=prompt, **options))


async def finish(provider: SimulatedProvider, clock: Clock, task: str, ctx: JobContext) -> str:
    """Jump past the longest wait and return the result URL."""
    clock.now += provider.expected_seconds(ctx.request)[1] + 1
    result = await provider.status(task, ctx)
    assert result.state is ProviderState.SUCCEEDED and result.progress == 100
    assert result.result_url and result.result_url.startswith("file://")
    return result.result_url


def expect(kind: ErrorKind, raised: pytest.ExceptionInfo[ProviderError]) -> ProviderError:
    assert raised.value.kind is kind, raised.value
    return raised.value


# -- the happy path ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "options", "size", "audio"),
    [
        ("kling", {"aspect_ratio": "1:1"}, (720, 720), False),
        ("sora", {"orientation": "portrait"}, (720, 1280), True),
    ],
)
async def test_queued_then_running_then_succeeded_then_fetched(
    provider: SimulatedProvider, clock: Clock, tmp_path: Path, model: str, options: dict[str, Any],
    size: tuple[int, int], audio: bool,
) -> None:
    ctx = ctx_for(1, model, **options)
    low, high = provider.expected_seconds(ctx.request)
    task = await provider.submit(ctx)
    assert task.startswith("sim-1-")

    first = await provider.status(task, ctx)
    assert first.state is ProviderState.QUEUED and first.progress == 0
    seen = []
    for _ in range(3):
        clock.now += low * 0.3
        result = await provider.status(task, ctx)
        assert result.state is ProviderState.RUNNING and result.result_url is None
        seen.append(result.progress or 0)
    assert 0 < seen[0] < seen[1] < seen[2] < 100, seen

    url = await finish(provider, clock, task, ctx)
    dest = tmp_path / "out" / "job1.mp4"
    size_bytes = await provider.fetch(url, dest, ctx, max_bytes=50_000_000)
    assert size_bytes == dest.stat().st_size > 1000
    info = probe(dest)
    assert (info.width, info.height) == size
    assert info.duration == pytest.approx(ctx.request.seconds, abs=0.5)
    assert info.video_codec == "h264" and (info.audio_codec is not None) is audio


async def test_the_wait_follows_the_models_range_scaled_by_speed(settings: Settings, tmp_path: Path) -> None:
    """content_policy fails at the ready time without rendering, which makes the ready time cheap to observe."""
    for job_id in range(1, 9):
        ctx = ctx_for(job_id, "sora", "[fail:content_policy] a city", duration=12, resolution="high", seed=job_id)
        low, high = ctx.request.typical_wait()
        clock = Clock()
        provider = SimulatedProvider(settings, clock=clock, work_dir=tmp_path / f"w{job_id}")
        assert provider.expected_seconds(ctx.request) == pytest.approx((low * SPEED, high * SPEED))
        task = await provider.submit(ctx)
        start = clock.now
        clock.now = start + low * SPEED - 0.01
        assert (await provider.status(task, ctx)).state is ProviderState.RUNNING
        clock.now = start + high * SPEED
        assert (await provider.status(task, ctx)).state is ProviderState.FAILED


async def test_the_wait_is_deterministic_per_job(settings: Settings, tmp_path: Path) -> None:
    states = []
    for attempt in range(2):
        clock = Clock()
        provider = SimulatedProvider(settings, clock=clock, work_dir=tmp_path / f"run{attempt}")
        ctx = ctx_for(42, prompt="[fail:content_policy] x", duration=10)
        task = await provider.submit(ctx)
        low, high = provider.expected_seconds(ctx.request)
        observed = []
        for step in range(11):
            clock.now = 1_900_000_000.0 + low + (high - low) * step / 10
            observed.append((await provider.status(task, ctx)).state)
        states.append(observed)
    assert states[0] == states[1]
    assert ProviderState.RUNNING in states[0] and ProviderState.FAILED in states[0]


def test_model_ids(provider: SimulatedProvider) -> None:
    assert provider.name == "simulated"
    assert provider.model_id(parse_request("kling", prompt="p")) == "sim-kling-2.0"
    assert provider.model_id(parse_request("sora", prompt="p")) == "sim-sora-2"
    assert provider.model_id(parse_request("sora", prompt="p", resolution="high")) == "sim-sora-2-pro"


def test_default_work_dir_is_under_the_video_dir(settings: Settings) -> None:
    assert SimulatedProvider(settings).work_dir == settings.video_dir / "simulated"


# -- restarts and rendering once -------------------------------------------------------------------


async def test_a_new_instance_continues_a_task_the_old_one_submitted(
    settings: Settings, clock: Clock, tmp_path: Path, renders: dict[str, Any]
) -> None:
    ctx = ctx_for(3, "sora")
    old = SimulatedProvider(settings, clock=clock)
    task = await old.submit(ctx)
    low, _ = old.expected_seconds(ctx.request)
    clock.now += low * 0.5
    before = await old.status(task, ctx)
    del old  # the bot restarts

    reborn = SimulatedProvider(settings, clock=clock)
    during = await reborn.status(task, ctx)
    assert during.state is ProviderState.RUNNING and during.progress == before.progress
    url = await finish(reborn, clock, task, ctx)
    assert await reborn.fetch(url, tmp_path / "v.mp4", ctx, max_bytes=10**9) > 0

    third = SimulatedProvider(settings, clock=clock)  # restarted again after the render: no re-render
    assert (await third.status(task, ctx)).result_url == url
    assert renders["calls"] == 1


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Count (and optionally break) renders; each one takes a little real time so callers overlap."""
    state: dict[str, Any] = {"calls": 0, "fail": 0}
    real = simulated.render_video

    def counting(*args: Any, **kwargs: Any) -> None:
        state["calls"] += 1
        time.sleep(0.2)
        if state["fail"]:
            state["fail"] -= 1
            raise RuntimeError("encoder exploded")
        real(*args, **kwargs)

    monkeypatch.setattr(simulated, "render_video", counting)
    return state


async def test_concurrent_status_calls_render_once(
    provider: SimulatedProvider, clock: Clock, renders: dict[str, Any]
) -> None:
    ctx = ctx_for(4)
    task = await provider.submit(ctx)
    clock.now += 10_000
    results = await asyncio.gather(*(provider.status(task, ctx) for _ in range(5)))
    assert {r.state for r in results} == {ProviderState.SUCCEEDED}
    assert len({r.result_url for r in results}) == 1
    assert (await provider.status(task, ctx)).state is ProviderState.SUCCEEDED
    assert renders["calls"] == 1


async def test_a_cancelled_status_call_does_not_stop_or_duplicate_the_render(
    provider: SimulatedProvider, clock: Clock, renders: dict[str, Any]
) -> None:
    ctx = ctx_for(5)
    task = await provider.submit(ctx)
    clock.now += 10_000
    waiting = asyncio.create_task(provider.status(task, ctx))
    await asyncio.sleep(0.05)
    waiting.cancel()  # e.g. the poller's timeout
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await provider.status(task, ctx)).state is ProviderState.SUCCEEDED
    assert renders["calls"] == 1


async def test_a_failed_render_is_transient_and_retried(
    provider: SimulatedProvider, clock: Clock, renders: dict[str, Any]
) -> None:
    ctx = ctx_for(6)
    task = await provider.submit(ctx)
    clock.now += 10_000
    renders["fail"] = 1
    with pytest.raises(ProviderError) as raised:
        await provider.status(task, ctx)
    assert expect(ErrorKind.TRANSIENT, raised).retryable
    assert (await provider.status(task, ctx)).state is ProviderState.SUCCEEDED
    assert renders["calls"] == 2


async def test_the_reference_image_is_kept_and_opens_the_video(
    provider: SimulatedProvider, clock: Clock, tmp_path: Path
) -> None:
    red = tmp_path / "job7.png"
    Image.new("RGB", (720, 720), (255, 0, 0)).save(red)
    request = parse_request("kling", prompt="p", aspect_ratio="1:1").model_copy(update={"reference_image": str(red)})
    ctx = JobContext(job_id=7, request=request)
    task = await provider.submit(ctx)
    red.unlink()  # retention may remove the fitted first frame before the render happens
    url = await finish(provider, clock, task, ctx)
    dest = tmp_path / "v.mp4"
    await provider.fetch(url, dest, ctx, max_bytes=10**9)
    with av.open(str(dest)) as container:
        first = next(container.decode(video=0)).to_image()
    r, g, b = ImageStat.Stat(first).mean
    assert r > 200 and g < 50 and b < 50


# -- failure keywords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["invalid_request", "quota_or_billing", "model_unavailable", "auth", "rate_limited", "transient"],
)
@pytest.mark.parametrize("model", ["kling", "sora-high"])
async def test_submit_failures(provider: SimulatedProvider, kind: str, model: str) -> None:
    options = {"resolution": "high"} if model == "sora-high" else {}
    ctx = ctx_for(8, model.removesuffix("-high"), f"a cat [fail:{kind}] on a roof", **options)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(ctx)
    error = expect(ErrorKind(kind), raised)
    assert error.retryable is (kind in ("rate_limited", "transient"))
    assert error.model == provider.model_id(ctx.request)
    if kind == "model_unavailable":
        assert provider.model_id(ctx.request) in error.message
    if kind == "rate_limited":
        assert error.retry_after == pytest.approx(2.0 * SPEED)
    else:
        assert error.retry_after is None
    assert not list(provider.work_dir.glob("sim-*.json"))  # nothing was submitted


async def test_content_policy_fails_at_status_after_the_wait(provider: SimulatedProvider, clock: Clock) -> None:
    ctx = ctx_for(9, "sora", "[fail:content_policy] something forbidden")
    task = await provider.submit(ctx)
    assert (await provider.status(task, ctx)).state is ProviderState.QUEUED
    clock.now += provider.expected_seconds(ctx.request)[0] * 0.5
    assert (await provider.status(task, ctx)).state is ProviderState.RUNNING
    clock.now += 10_000
    result = await provider.status(task, ctx)
    assert result.state is ProviderState.FAILED and result.error is not None
    assert result.error.kind is ErrorKind.CONTENT_POLICY and result.result_url is None
    assert not list(provider.work_dir.glob("*.mp4"))  # moderation blocks before anything is rendered


async def test_the_setting_fails_every_job(settings: Settings, clock: Clock) -> None:
    failing = SimulatedProvider(settings.model_copy(update={"simulated_fail": "quota_or_billing"}), clock=clock)
    for job_id in (10, 11):
        with pytest.raises(ProviderError) as raised:
            await failing.submit(ctx_for(job_id, prompt="an innocent prompt"))
        expect(ErrorKind.QUOTA_OR_BILLING, raised)
    moderated = SimulatedProvider(settings.model_copy(update={"simulated_fail": "content_policy"}), clock=clock)
    ctx = ctx_for(12)
    task = await moderated.submit(ctx)
    clock.now += 10_000
    assert (await moderated.status(task, ctx)).state is ProviderState.FAILED


async def test_fail_once_fails_only_the_first_submit_even_across_a_restart(
    settings: Settings, clock: Clock
) -> None:
    ctx = ctx_for(13, prompt="[fail-once:rate_limited] a cat")
    with pytest.raises(ProviderError) as raised:
        await SimulatedProvider(settings, clock=clock).submit(ctx)
    assert expect(ErrorKind.RATE_LIMITED, raised).retry_after
    task = await SimulatedProvider(settings, clock=clock).submit(ctx)  # the retry, after a restart
    assert task.startswith("sim-13-")
    with pytest.raises(ProviderError):  # attempts are per job: another job fails once too
        await SimulatedProvider(settings, clock=clock).submit(ctx_for(14, prompt="[fail-once:rate_limited] a cat"))


async def test_fail_once_content_policy_blocks_only_the_first_task(provider: SimulatedProvider, clock: Clock) -> None:
    ctx = ctx_for(15, prompt="[fail-once:content_policy] a cat")
    first = await provider.submit(ctx)
    second = await provider.submit(ctx)
    clock.now += 10_000
    assert (await provider.status(first, ctx)).state is ProviderState.FAILED
    assert (await provider.status(second, ctx)).state is ProviderState.SUCCEEDED


async def test_an_unknown_keyword_is_an_invalid_request(provider: SimulatedProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.submit(ctx_for(16, prompt="[fail:tsunami] a cat"))
    assert "tsunami" in expect(ErrorKind.INVALID_REQUEST, raised).message


async def test_expired_output_fails_the_fetch(provider: SimulatedProvider, clock: Clock, tmp_path: Path) -> None:
    ctx = ctx_for(17, prompt="[fail:expired] a cat")
    task = await provider.submit(ctx)
    url = await finish(provider, clock, task, ctx)
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(url, tmp_path / "v.mp4", ctx, max_bytes=10**9)
    assert expect(ErrorKind.INVALID_REQUEST, raised).provider_code == "output_expired"
    assert not (tmp_path / "v.mp4").exists()


async def test_a_swept_output_is_expired_too(provider: SimulatedProvider, clock: Clock, tmp_path: Path) -> None:
    ctx = ctx_for(18)
    task = await provider.submit(ctx)
    url = await finish(provider, clock, task, ctx)
    old = time.time() - 2 * simulated.OUTPUT_TTL_SECONDS
    for path in provider.work_dir.iterdir():
        os.utime(path, (old, old))
    fresh = provider.work_dir / "sim-99-0123abcd.json"
    fresh.write_text("{}")
    assert sweep_work_dir(provider.work_dir, simulated.OUTPUT_TTL_SECONDS) >= 2
    assert [p.name for p in provider.work_dir.iterdir()] == [fresh.name]
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(url, tmp_path / "v.mp4", ctx, max_bytes=10**9)
    assert expect(ErrorKind.INVALID_REQUEST, raised).provider_code == "output_expired"


# -- cancel, fetch limits, bad ids -------------------------------------------------------------------


async def test_cancel(provider: SimulatedProvider, clock: Clock) -> None:
    ctx = ctx_for(19)
    task = await provider.submit(ctx)
    assert await provider.cancel(task, ctx) is True
    assert (await provider.status(task, ctx)).state is ProviderState.CANCELED
    clock.now += 10_000
    assert (await SimulatedProvider(provider.settings, clock=clock).status(task, ctx)).state is ProviderState.CANCELED
    assert not list(provider.work_dir.glob("*.mp4"))
    assert await provider.cancel("sim-19-00000000", ctx) is False


async def test_unknown_task_ids(provider: SimulatedProvider) -> None:
    ctx = ctx_for(20)
    for task in ("sim-20-deadbeef", "../../etc/passwd", ""):
        with pytest.raises(ProviderError) as raised:
            await provider.status(task, ctx)
        expect(ErrorKind.INVALID_REQUEST, raised)


async def test_fetch_enforces_max_bytes_without_leaving_partial_files(
    provider: SimulatedProvider, clock: Clock, tmp_path: Path
) -> None:
    ctx = ctx_for(21, "sora")
    task = await provider.submit(ctx)
    url = await finish(provider, clock, task, ctx)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ProviderError) as raised:
        await provider.fetch(url, out / "v.mp4", ctx, max_bytes=1000)
    assert "larger" in expect(ErrorKind.INVALID_REQUEST, raised).message
    assert not list(out.iterdir())
    exact = (provider.work_dir / f"{task}.mp4").stat().st_size
    assert await provider.fetch(url, out / "v.mp4", ctx, max_bytes=exact) == exact


async def test_fetch_only_serves_its_own_outputs(provider: SimulatedProvider, tmp_path: Path) -> None:
    ctx = ctx_for(22)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    escape = provider.work_dir / ".." / "secret.mp4"
    for url in (secret.as_uri(), "https://example.com/sim-1-0123abcd.mp4", escape.as_uri(), "file:///etc/passwd"):
        with pytest.raises(ProviderError) as raised:
            await provider.fetch(url, tmp_path / "v.mp4", ctx, max_bytes=10**9)
        expect(ErrorKind.INVALID_REQUEST, raised)
    assert not (tmp_path / "v.mp4").exists()


async def test_task_files_are_small_json(provider: SimulatedProvider) -> None:
    ctx = ctx_for(23, "sora", "a detailed prompt " * 50)
    task = await provider.submit(ctx)
    stored = json.loads((provider.work_dir / f"{task}.json").read_text())
    assert stored["job_id"] == 23 and stored["ready_at"] > stored["submitted_at"]
    request: AnyRequest = parse_request("sora", prompt="a detailed prompt " * 50)
    assert json.loads(stored["request"])["prompt"] == request.prompt


async def test_find_by_request_key(provider: SimulatedProvider) -> None:
    ctx = JobContext(job_id=4, request=parse_request("kling", prompt="x"), request_key="j4-aa")
    first = await provider.submit(ctx)
    second = await provider.submit(ctx)
    other = await provider.submit(JobContext(job_id=4, request=ctx.request, request_key="j4-bb"))
    found = await provider.find("j4-aa", ctx)
    assert set(found) == {first, second} and other not in found
    assert await provider.find("j4-zz", ctx) == []
    assert provider.can_cancel
