"""bot/media.py on real files made with PyAV: fit, fast start, codecs, blind clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from bot import media
from bot.render import render_video


def make_clip(path: Path, *, width: int = 640, height: int = 360, seconds: float = 2.0, fps: int = 12,
              audio: bool = True, codec: str = "libx264", faststart: bool = False, title: str | None = None) -> Path:
    """A noisy test clip (hard to compress, so sizes mean something), written like a provider might."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as out:
        if title:
            out.metadata["title"] = title
            out.metadata["comment"] = title
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        if codec == "libx264":
            video.options = {"preset": "ultrafast", "crf": "18"}
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48_000)
            sound.layout = "mono"
        noise = bytearray(width * height * 3 // 2)
        seed = 12345
        for index in range(int(seconds * fps)):
            for i in range(0, len(noise), 7):
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                noise[i] = seed >> 23
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.planes[0].update(bytes(noise[: width * height]))
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = int(seconds * 48_000)
            for start in range(0, samples, 1024):
                count = min(1024, samples - start)
                chunk = av.AudioFrame(format="flt", layout="mono", samples=count)
                chunk.planes[0].update(bytes(4 * count))
                chunk.sample_rate, chunk.pts, chunk.time_base = 48_000, start, Fraction(1, 48_000)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def box_order(path: Path) -> list[str]:
    return [kind for kind, _ in media.top_level_boxes(path) if kind in ("moov", "mdat")]


def test_box_parser_sees_where_ffmpeg_put_moov(tmp_path: Path) -> None:
    late = make_clip(tmp_path / "late.mp4", seconds=0.5, audio=False)
    early = make_clip(tmp_path / "early.mp4", seconds=0.5, audio=False, faststart=True)
    assert box_order(late) == ["mdat", "moov"] and not media.is_faststart(late)
    assert box_order(early) == ["moov", "mdat"] and media.is_faststart(early)
    sizes = sum(size for _, size in media.top_level_boxes(early))
    assert sizes == early.stat().st_size


def test_simulated_renderer_writes_fast_start(tmp_path: Path) -> None:
    out = tmp_path / "sim.mp4"
    render_video(out, width=320, height=180, seconds=1, fps=4, audio=True, title="t", prompt="p")
    assert box_order(out) == ["moov", "mdat"]


def test_fitting_file_with_moov_at_the_end_is_remuxed_not_reencoded(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "provider.mp4", seconds=1)
    before = media.probe(src)
    prepared = media.prepare_for_post(src, tmp_path / "work", before.size + 10_000)
    assert prepared.action == "remuxed" and prepared.derived
    after = media.probe(prepared.path)
    assert after.faststart and after.postable_codecs
    assert (after.width, after.height, after.frames) == (before.width, before.height, before.frames)
    assert abs(after.size - before.size) < 4096  # same packets, only the index moved
    assert media.prepare_for_post(prepared.path, tmp_path / "work", after.size).action == "as-is"


def test_other_codecs_are_reencoded_to_h264(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "mpeg4.mp4", codec="mpeg4", seconds=1, audio=False)
    prepared = media.prepare_for_post(src, tmp_path / "work", 50 * 1024 * 1024)
    info = media.probe(prepared.path)
    assert prepared.action == "re-encoded"
    assert (info.video_codec, info.pix_fmt, info.audio_codec, info.faststart) == ("h264", "yuv420p", None, True)


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_over_limit_file_is_reencoded_to_fit_keeping_duration_and_aspect(tmp_path: Path, share: float) -> None:
    src = make_clip(tmp_path / "big.mp4", width=640, height=360, seconds=2)
    before = media.probe(src)
    limit = int(before.size * share)
    prepared = media.prepare_for_post(src, tmp_path / "work", limit)
    after = media.probe(prepared.path)
    assert prepared.action == "re-encoded"
    assert after.size == prepared.size == prepared.path.stat().st_size <= limit
    assert after.size > limit * 0.3  # it used the room it had, not a postage stamp
    assert abs(after.duration - before.duration) < 0.1 and after.frames == before.frames
    assert after.width % 2 == 0 and after.height % 2 == 0
    assert abs(after.width / after.height - 16 / 9) < 0.02
    assert (after.video_codec, after.pix_fmt, after.audio_codec) == ("h264", "yuv420p", "aac")
    assert box_order(prepared.path) == ["moov", "mdat"]


def test_plan_downscales_only_below_the_bitrate_floor() -> None:
    info = media.MediaInfo(width=1920, height=1080, duration=10.0, fps=Fraction(30), frames=300, video_codec="h264",
                           pix_fmt="yuv420p", audio_codec="aac", size=60 << 20, faststart=True)
    roomy = media.plan_fit(info, 25 << 20)
    assert (roomy.width, roomy.height) == (1920, 1080)
    assert 15_000_000 < roomy.video_bitrate + (roomy.audio_bitrate or 0) < 25 * 8 * 1048576 / 10
    tight = media.plan_fit(info, 2 << 20)
    assert tight.width < 1920 and tight.height < 1080 and abs(tight.width / tight.height - 16 / 9) < 0.02
    assert tight.video_bitrate >= media.MIN_BITS_PER_PIXEL * tight.width * tight.height * 30 * 0.95
    silent = media.plan_fit(info, 25 << 20, keep_audio=False)
    assert silent.audio_bitrate is None and silent.video_bitrate > roomy.video_bitrate
    with pytest.raises(media.MediaError):
        media.plan_fit(info, 30_000)


def test_hopeless_limit_leaves_the_file_over_limit(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "big.mp4", seconds=2)
    prepared = media.prepare_for_post(src, tmp_path / "work", 20_000)
    assert prepared.action == "over-limit" and prepared.path == src and not prepared.derived


def test_blind_clip_is_trimmed_silent_and_untagged(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "sora.mp4", seconds=2, title="Sora 2 by OpenAI")
    assert b"Sora" in src.read_bytes()
    clip = media.blind_clip(src, tmp_path / "A.mp4", seconds=1.5)
    info = media.probe(clip.path)
    assert info.audio_codec is None and abs(info.duration - 1.5) < 0.01 and info.frames == 18
    assert info.faststart and info.video_codec == "h264"
    data = clip.path.read_bytes()
    assert b"Sora" not in data and b"OpenAI" not in data
    with av.open(str(clip.path)) as container:
        assert not any("sora" in str(value).lower() for value in container.metadata.values())


async def test_encoder_runs_in_a_child_process_and_reports_errors(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "big.mp4", seconds=1)
    encoder = media.Encoder(1)
    limit = src.stat().st_size // 2
    prepared = await encoder.prepare(src, tmp_path / "work", limit)
    assert prepared.action == "re-encoded" and prepared.size <= limit and prepared.path.exists()
    clip = await encoder.blind(src, tmp_path / "B.mp4", seconds=0.5, max_bytes=None)
    assert media.probe(clip.path).audio_codec is None and abs(media.probe(clip.path).duration - 0.5) < 0.01
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 10)
    with pytest.raises(media.MediaError):
        await encoder.prepare(junk, tmp_path / "work", limit)


def test_blind_clips_of_different_rates_and_sizes_come_out_alike(tmp_path: Path) -> None:
    kling = make_clip(tmp_path / "kling.mp4", width=640, height=360, seconds=2.0, fps=12, audio=False)
    sora = make_clip(tmp_path / "sora.mp4", width=960, height=540, seconds=1.5, fps=8, audio=True)
    shape = {"seconds": 1.5, "fps": Fraction(8), "size": (640, 360)}
    a = media.probe(media.blind_clip(kling, tmp_path / "A.mp4", **shape).path)  # type: ignore[arg-type]
    b = media.probe(media.blind_clip(sora, tmp_path / "B.mp4", **shape).path)  # type: ignore[arg-type]
    for info in (a, b):
        assert (info.width, info.height, info.fps, info.frames, info.audio_codec) == (640, 360, 8, 12, None)
        assert abs(info.duration - 1.5) < 0.01
