"""render_video writes real, exactly-sized H.264/AAC MP4s; media.probe reads them back."""

from __future__ import annotations

import array
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from PIL import Image, ImageChops, ImageFont, ImageStat

from bot.media import probe
from bot.render import render_video, wrap_text
from bot.requests import parse_request

FPS = 3  # low on purpose: the checks are about size, duration and streams, not smoothness

NASTY_PROMPT = (
    "Ünïcödé 🦊🏳️‍🌈 中文字幕 עברית العربية e\u0301 \u200b\u200d\ufeff \x00\x07 tab\tnew\nline \ud800 "
    + "averyveryverylongwordwithoutanyspaces" * 40
    + " many words " * 600
)


def mean_rgb(image: Image.Image) -> tuple[float, float, float]:
    r, g, b = ImageStat.Stat(image.convert("RGB")).mean
    return r, g, b


def decode_frames(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def render_request(path: Path, model: str, *, fps: int = FPS, first_frame: Path | None = None,
                   prompt: str = "A red fox runs through fresh snow at dawn.", **options: object) -> None:
    request = parse_request(model, prompt=prompt, **options)
    width, height = request.size
    render_video(path, width=width, height=height, seconds=request.seconds, fps=fps, audio=request.has_audio,
                 title=f"{request.label} (simulated)", prompt=request.prompt, first_frame=first_frame, seed=7)


@pytest.mark.parametrize(
    ("model", "options", "size", "seconds"),
    [
        ("kling", {"aspect_ratio": "16:9", "duration": 5}, (1280, 720), 5),
        ("kling", {"aspect_ratio": "1:1"}, (720, 720), 5),
        ("kling", {"aspect_ratio": "9:16", "duration": 10}, (720, 1280), 10),
        ("sora", {"orientation": "landscape", "duration": 4}, (1280, 720), 4),
        ("sora", {"resolution": "high", "orientation": "portrait"}, (1024, 1792), 4),
    ],
    ids=["kling-16:9-5s", "kling-1:1", "kling-9:16-10s", "sora-landscape-4s", "sora-high-portrait"],
)
def test_size_duration_codecs_and_audio_match_the_model(
    tmp_path: Path, model: str, options: dict[str, object], size: tuple[int, int], seconds: int
) -> None:
    out = tmp_path / "clip.mp4"
    render_request(out, model, **options)

    info = probe(out)
    assert (info.width, info.height) == size
    assert info.duration == pytest.approx(seconds, abs=1 / FPS)
    assert info.fps == pytest.approx(FPS)
    assert info.video_codec == "h264"
    if model == "sora":
        assert info.audio_codec == "aac"
    else:
        assert info.audio_codec is None
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(video=0)) == seconds * FPS
        if model == "sora":
            sound = container.streams.audio[0]
            assert float(sound.duration * sound.time_base) == pytest.approx(seconds, abs=1 / FPS)
        else:
            assert not container.streams.audio
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # the temp file is gone


def test_frames_move_and_the_audio_is_not_silent(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    render_video(out, width=640, height=360, seconds=4, fps=4, audio=True, title="Sora 2", prompt="waves")
    frames = decode_frames(out)
    for later in (frames[1], frames[len(frames) // 2]):  # every pixel channel moves a little on average
        assert sum(ImageStat.Stat(ImageChops.difference(frames[0], later)).mean) > 6
    with av.open(str(out)) as container:
        loudest = 0.0
        for frame in container.decode(audio=0):
            samples = array.array("f", bytes(frame.planes[0]))
            loudest = max(loudest, max((abs(s) for s in samples), default=0.0))
    assert 0.05 < loudest <= 1.0


def test_first_frame_shows_the_reference_image_then_fades(tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    Image.new("RGB", (1280, 720), (255, 0, 0)).save(red)
    out = tmp_path / "clip.mp4"
    render_request(out, "kling", fps=4, first_frame=red)
    frames = decode_frames(out)
    r, g, b = mean_rgb(frames[0])
    assert r > 200 and g < 50 and b < 50
    r, g, b = mean_rgb(frames[-1])
    assert not (r > 200 and g < 50 and b < 50)  # the animation has taken over


def test_a_reference_of_another_shape_is_scaled_to_fit_not_stretched(tmp_path: Path) -> None:
    square = tmp_path / "square.png"
    Image.new("RGB", (100, 100), (0, 0, 255)).save(square)
    out = tmp_path / "clip.mp4"
    render_video(out, width=640, height=360, seconds=2, fps=2, audio=False, title="t", prompt="p",
                 first_frame=square)
    first = decode_frames(out)[0]
    assert mean_rgb(first.crop((300, 160, 340, 200)))[2] > 200  # centre: the image
    assert max(mean_rgb(first.crop((0, 0, 60, 360)))) < 30  # sides: letterbox bars


@pytest.mark.parametrize("prompt", [NASTY_PROMPT, "x", "🦊" * 3000, "\ud800\udfff" * 10])
def test_any_unicode_and_very_long_prompts_render(tmp_path: Path, prompt: str) -> None:
    out = tmp_path / "clip.mp4"
    render_video(out, width=320, height=240, seconds=1, fps=2, audio=False, title=prompt[:80], prompt=prompt)
    assert probe(out).width == 320


def test_a_failed_render_leaves_neither_a_partial_file_nor_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"previous video")
    broken = tmp_path / "not-an-image.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(OSError):
        render_video(out, width=320, height=240, seconds=1, fps=2, audio=True, title="t", prompt="p",
                     first_frame=broken)
    assert out.read_bytes() == b"previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "not-an-image.png"]


@pytest.mark.parametrize(("width", "height", "seconds", "fps"), [(321, 240, 1, 1), (320, 240, 0, 1), (320, 240, 1, 0)])
def test_impossible_parameters_are_refused(tmp_path: Path, width: int, height: int, seconds: int, fps: int) -> None:
    with pytest.raises(ValueError):
        render_video(tmp_path / "x.mp4", width=width, height=height, seconds=seconds, fps=fps, audio=False,
                     title="t", prompt="p")
    assert not list(tmp_path.iterdir())


FONT = ImageFont.load_default(size=20)


def test_long_prompts_are_wrapped_and_end_with_an_ellipsis() -> None:
    lines = wrap_text("word " * 500, FONT, 300, 4)
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert all(FONT.getlength(line) <= 300 for line in lines)
    assert wrap_text("short prompt", FONT, 300, 4) == ["short prompt"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=400), max_width=st.integers(20, 600), max_lines=st.integers(1, 6))
def test_wrapping_never_overflows(text: str, max_width: int, max_lines: int) -> None:
    lines = wrap_text(" ".join(text.split()), FONT, max_width, max_lines)
    assert len(lines) <= max_lines
    for line in lines:  # a single glyph wider than the line is the only allowed overflow
        assert FONT.getlength(line) <= max_width or len(line.rstrip("…")) <= 1
