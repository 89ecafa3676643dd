"""Making every posted MP4 playable at once and small enough to attach (PyAV, off the event loop).

Discord's clients start playing an MP4 before the download ends only when its `moov` box (the
index) comes before `mdat` (the samples), and play it everywhere only as H.264 yuv420p (+ AAC).
Provider files are not always like that, and real 10-12 s renders often exceed the default
10 MiB upload limit; with no PUBLIC_BASE_URL such a video would reach nobody. So before posting:

- a file that already fits and is fast-start H.264/AAC is posted as it is;
- one with the right codecs but `moov` at the end is remuxed (no re-encode);
- one over the limit (or in other codecs) is re-encoded to a bitrate computed from the limit and
  its duration, downscaled only when that bitrate would starve the picture, and checked: if it
  is still over, it is encoded once more, lower.

Blind /compare clips are also made here: trimmed to one length, silent, and without the
provider's metadata (nothing in the file may name a model before the vote).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

# Budget: the file must stay under the limit after the muxer's own bytes and x264's rate error.
SAFETY = 0.07  # single-pass ABR lands within a few percent of the target on short clips
FIXED_OVERHEAD = 4096  # ftyp, moov headers, free
PER_FRAME_OVERHEAD = 20  # sample table entries per video frame (stsz, stts, ctts, stco)
AUDIO_BITRATES = (128_000, 96_000, 64_000, 32_000)
AUDIO_SHARE = 0.15  # audio may take at most this share of the budget, or it gets a lower bitrate
# Below ~0.05 bits per pixel per frame x264's picture falls apart; then fewer, sharper pixels look better.
MIN_BITS_PER_PIXEL = 0.05
MIN_SHORT_SIDE = 144
MIN_VIDEO_BITRATE = 40_000
# x264's VBV caps what is sent by t seconds at maxrate * t + the buffer's initial fill (90 %), so
# with maxrate = the target bitrate and a one-second buffer the total cannot pass the budget even
# on a short, noisy clip where plain ABR overshoots by 20 % and more.
VBV_SECONDS = 1.0
RETRY_FACTOR = 0.9  # the second attempt aims this far below the first one's measured overshoot
PRESET = "veryfast"
QUALITY_CRF = 20  # for re-encodes that only change codecs, not size


class MediaError(Exception):
    """The file cannot be made postable (unreadable, no video, or cannot fit even at the floor)."""


@dataclass(frozen=True)
class MediaInfo:
    """What a posted file must be checked for."""

    width: int
    height: int
    duration: float
    fps: Fraction
    frames: int
    video_codec: str
    pix_fmt: str | None
    audio_codec: str | None
    size: int
    faststart: bool

    @property
    def postable_codecs(self) -> bool:
        return self.video_codec == "h264" and self.pix_fmt == "yuv420p" and self.audio_codec in (None, "aac")


@dataclass(frozen=True)
class EncodePlan:
    width: int
    height: int
    video_bitrate: int
    audio_bitrate: int | None  # None: no audio track


@dataclass(frozen=True)
class Prepared:
    """The file to attach and what was done to it."""

    path: Path
    size: int
    action: str  # "as-is", "remuxed", "re-encoded", "over-limit"
    width: int
    height: int
    derived: bool  # a new file the caller may delete after posting


# -- reading --------------------------------------------------------------------------------------


def top_level_boxes(path: Path | str) -> list[tuple[str, int]]:
    """The MP4's top-level boxes as (type, size), in file order (ISO/IEC 14496-12 §4.2)."""
    boxes: list[tuple[str, int]] = []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        offset = 0
        while offset + 8 <= end:
            handle.seek(offset)
            size, kind = struct.unpack(">I4s", handle.read(8))
            if size == 1:
                (size,) = struct.unpack(">Q", handle.read(8))
            elif size == 0:
                size = end - offset
            if size < 8:
                raise MediaError(f"corrupt MP4 box at offset {offset}")
            boxes.append((kind.decode("latin-1"), size))
            offset += size
    return boxes


def is_faststart(path: Path | str) -> bool:
    """True when `moov` precedes `mdat`, so playback can start before the download ends."""
    kinds = [kind for kind, _ in top_level_boxes(path)]
    return "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")


def stream_seconds(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> float:
    """A video stream's length: its own duration where the file states one, else the container's, else 0."""
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def probe(path: Path | str) -> MediaInfo:
    """Size, duration, rate, codecs and box order of a video file."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("the file has no video stream")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            duration = stream_seconds(container, video)
            fps = Fraction(video.average_rate or video.base_rate or 24)
            frames = video.frames or round(duration * fps)
            info = MediaInfo(
                width=video.codec_context.width, height=video.codec_context.height, duration=duration, fps=fps,
                frames=frames, video_codec=video.codec_context.name,
                pix_fmt=video.codec_context.pix_fmt, audio_codec=audio.codec_context.name if audio else None,
                size=path.stat().st_size, faststart=False,
            )
    except av.FFmpegError as error:
        raise MediaError(f"unreadable video ({type(error).__name__})") from None
    try:
        faststart = is_faststart(path)
    except (MediaError, struct.error):
        faststart = False
    return MediaInfo(**{**info.__dict__, "faststart": faststart})


# -- planning -------------------------------------------------------------------------------------


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def plan_fit(info: MediaInfo, max_bytes: int, *, keep_audio: bool = True, seconds: float | None = None) -> EncodePlan:
    """Bitrates and frame size that make a `seconds`-long encode of `info` land under `max_bytes`.

    The budget leaves room for the container and x264's rate error; audio gets a modest bitrate
    (never more than AUDIO_SHARE of the budget); the picture is downscaled, keeping its aspect,
    only when the video bitrate would drop below MIN_BITS_PER_PIXEL.
    """
    duration = max(0.1, seconds if seconds is not None else info.duration)
    frames = math.ceil(duration * float(info.fps))
    budget_bits = (max_bytes * (1 - SAFETY) - FIXED_OVERHEAD - PER_FRAME_OVERHEAD * frames) * 8
    total_rate = budget_bits / duration
    audio_rate: int | None = None
    if keep_audio and info.audio_codec is not None:
        audio_rate = next((rate for rate in AUDIO_BITRATES if rate <= total_rate * AUDIO_SHARE), AUDIO_BITRATES[-1])
    video_bits = budget_bits - (audio_rate or 0) * duration
    video_rate = int(video_bits / (duration + 0.9 * VBV_SECONDS))
    if video_rate < MIN_VIDEO_BITRATE:
        raise MediaError(f"{max_bytes} bytes cannot hold {duration:.1f} s of video")
    width, height = info.width, info.height
    pixels_per_second = width * height * float(info.fps)
    if video_rate < MIN_BITS_PER_PIXEL * pixels_per_second:
        scale = math.sqrt(video_rate / (MIN_BITS_PER_PIXEL * pixels_per_second))
        scale = max(scale, MIN_SHORT_SIDE / min(width, height))
        width, height = _even(width * min(1.0, scale)), _even(height * min(1.0, scale))
    return EncodePlan(width=_even(width), height=_even(height), video_bitrate=video_rate, audio_bitrate=audio_rate)


# -- writing --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic(dest: Path):  # type: ignore[no-untyped-def]
    """Yield a temporary path next to `dest`; it becomes `dest` only when the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def remux(src: Path | str, dest: Path | str, *, audio: bool = True) -> None:
    """Copy the streams into a fast-start MP4 without re-encoding (and without the source's tags)."""
    dest = Path(dest)
    with _atomic(dest) as tmp, av.open(str(src)) as source, \
            av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        streams = [source.streams.video[0]] + (list(source.streams.audio[:1]) if audio else [])
        mapping = {stream.index: out.add_stream_from_template(stream) for stream in streams}
        for packet in source.demux(streams):
            if packet.dts is None:  # the demuxer's end-of-stream flush packet
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def transcode(src: Path | str, dest: Path | str, *, width: int | None = None, height: int | None = None,
              video_bitrate: int | None = None, audio_bitrate: int | None = 128_000,
              max_seconds: float | None = None, crf: int = QUALITY_CRF, preset: str = PRESET,
              fps: Fraction | float | None = None) -> None:
    """Re-encode to fast-start H.264 yuv420p (+ AAC), optionally resized, rate-capped, trimmed, silent.

    `video_bitrate` None means constant quality (`crf`); `audio_bitrate` None drops the audio.
    Frames are renumbered at the source's frame rate (or converted to `fps`, nearest frame), so
    duration and frame count are kept (or cut exactly at `max_seconds`). Nothing from the
    source's metadata is carried over.
    """
    dest = Path(dest)
    with _atomic(dest) as tmp, av.open(str(src)) as source, \
            av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        in_video = source.streams.video[0]
        in_audio = source.streams.audio[0] if source.streams.audio and audio_bitrate is not None else None
        source_fps = Fraction(in_video.average_rate or in_video.base_rate or 24).limit_denominator(1001)
        fps = Fraction(fps).limit_denominator(1001) if fps else source_fps
        width = width or in_video.codec_context.width
        height = height or in_video.codec_context.height
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = _even(width), _even(height), "yuv420p"
        video.codec_context.time_base = 1 / fps
        options = {"preset": preset}
        if video_bitrate is None:
            options["crf"] = str(crf)
        else:
            video.bit_rate = video_bitrate
            options["maxrate"] = str(video_bitrate)  # see VBV_SECONDS
            options["bufsize"] = str(int(video_bitrate * VBV_SECONDS))
        video.options = options
        audio = None
        if in_audio is not None:
            audio = out.add_stream("aac", rate=in_audio.codec_context.sample_rate or 48_000)
            audio.bit_rate = audio_bitrate
            audio.layout = in_audio.codec_context.layout.name if in_audio.codec_context.layout else "stereo"
        limit = max_seconds if max_seconds is not None else math.inf
        half_step = 0.5 / float(source_fps)
        index = 0
        last: av.VideoFrame | None = None

        def emit(frame: av.VideoFrame) -> None:
            nonlocal index
            picture = frame.reformat(width=video.width, height=video.height, format="yuv420p")
            picture.pts, picture.time_base = index, video.codec_context.time_base
            index += 1
            out.mux(video.encode(picture))

        streams = [in_video] + ([in_audio] if in_audio is not None else [])
        for packet in source.demux(streams):
            for frame in packet.decode():
                start = frame.time if frame.time is not None else 0.0
                if isinstance(frame, av.VideoFrame):
                    last = frame
                    # Nearest-frame rate conversion: at the source's own rate, exactly one output per input.
                    while index < fps * (start + half_step) and index < fps * limit - 1e-6:
                        emit(frame)
                elif audio is not None and start < limit - 1e-6:
                    frame.pts = None
                    out.mux(audio.encode(frame))
        if max_seconds is not None and last is not None:  # a source a frame short still gets its full length
            while index < round(fps * max_seconds):
                emit(last)
        out.mux(video.encode(None))
        if audio is not None:
            out.mux(audio.encode(None))


# -- deciding -------------------------------------------------------------------------------------


def prepare_for_post(src: Path | str, work_dir: Path | str, max_bytes: int) -> Prepared:
    """Return a fast-start H.264/AAC file no larger than `max_bytes` made from `src` (blocking).

    Derived files are named after the source and the limit and written atomically, so a second
    call after a crash reuses a finished one instead of encoding again.
    """
    src, work_dir = Path(src), Path(work_dir)
    info = probe(src)
    if info.size <= max_bytes and info.postable_codecs and info.faststart:
        return Prepared(src, info.size, "as-is", info.width, info.height, derived=False)
    if info.size <= max_bytes and info.postable_codecs:
        dest = work_dir / f"{src.stem}.faststart.mp4"
        if not dest.exists():
            remux(src, dest)
        size = dest.stat().st_size
        if size <= max_bytes:
            return Prepared(dest, size, "remuxed", info.width, info.height, derived=True)
    dest = work_dir / f"{src.stem}.fit{max_bytes}.mp4"
    if dest.exists() and dest.stat().st_size <= max_bytes:
        done = probe(dest)
        return Prepared(dest, done.size, "re-encoded", done.width, done.height, derived=True)
    if info.size <= max_bytes:  # right size, wrong codecs: keep the quality, change the format
        transcode(src, dest, audio_bitrate=128_000 if info.audio_codec else None)
        if dest.stat().st_size <= max_bytes:
            done = probe(dest)
            return Prepared(dest, done.size, "re-encoded", done.width, done.height, derived=True)
    try:
        plan = plan_fit(info, max_bytes)
    except MediaError as error:
        log.info("%s cannot fit %d bytes: %s", src.name, max_bytes, error)
        return Prepared(src, info.size, "over-limit", info.width, info.height, derived=False)
    for attempt in (1, 2):
        transcode(src, dest, width=plan.width, height=plan.height, video_bitrate=plan.video_bitrate,
                  audio_bitrate=plan.audio_bitrate)
        size = dest.stat().st_size
        log.info("re-encode %s to %dx%d at %d kb/s: %d bytes for a %d limit (attempt %d)", src.name, plan.width,
                 plan.height, plan.video_bitrate // 1000, size, max_bytes, attempt)
        if size <= max_bytes:
            return Prepared(dest, size, "re-encoded", plan.width, plan.height, derived=True)
        lower = int(plan.video_bitrate * max_bytes / size * RETRY_FACTOR)
        if lower < MIN_VIDEO_BITRATE:
            break
        plan = EncodePlan(plan.width, plan.height, lower, plan.audio_bitrate)
    dest.unlink(missing_ok=True)
    return Prepared(src, info.size, "over-limit", info.width, info.height, derived=False)


def blind_clip(src: Path | str, dest: Path | str, *, seconds: float, max_bytes: int | None = None,
               fps: Fraction | float | None = None, size: tuple[int, int] | None = None) -> Prepared:
    """A /compare clip that cannot give its model away (blocking): `seconds` long, silent, no source
    tags, and, when given, at the pair's common frame rate and frame size (models differ in both)."""
    info = probe(src)
    plan = plan_fit(info, max_bytes, keep_audio=False, seconds=min(seconds, info.duration)) \
        if max_bytes is not None and info.size > max_bytes * 0.8 else None
    for _ in (1, 2):
        width, height = (plan.width, plan.height) if plan else size or (None, None)
        transcode(src, dest, audio_bitrate=None, max_seconds=seconds, width=width, height=height,
                  video_bitrate=plan.video_bitrate if plan else None, fps=fps)
        size = Path(dest).stat().st_size
        if max_bytes is None or size <= max_bytes:
            break
        plan = plan or plan_fit(info, max_bytes, keep_audio=False, seconds=min(seconds, info.duration))
        plan = EncodePlan(plan.width, plan.height, int(plan.video_bitrate * max_bytes / size * RETRY_FACTOR), None)
    done = probe(dest)
    action = "re-encoded" if max_bytes is None or done.size <= max_bytes else "over-limit"
    return Prepared(Path(dest), done.size, action, done.width, done.height, derived=True)


class Encoder:
    """Runs re-encodes in child processes, at most `parallel` at a time.

    A process of its own per job keeps the event loop free (no GIL shared with the bot), gives
    its memory (~230 MiB peak for 1080p) back when it ends, cannot take the bot down if FFmpeg
    crashes on a hostile file, and is killed when the delivery is cancelled (shutdown).
    """

    def __init__(self, parallel: int) -> None:
        self._slots = asyncio.Semaphore(parallel)

    async def _run(self, *args: str) -> Prepared:
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.media", *args,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await process.communicate()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
        if process.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise MediaError(lines[-1] if lines else f"media worker exited with {process.returncode}")
        fields = json.loads(out.decode().strip().splitlines()[-1])
        return Prepared(**{**fields, "path": Path(fields["path"])})

    async def prepare(self, src: Path, work_dir: Path, max_bytes: int) -> Prepared:
        info = await asyncio.to_thread(probe, src)  # milliseconds; most files need nothing more
        if info.size <= max_bytes and info.postable_codecs and info.faststart:
            return Prepared(src, info.size, "as-is", info.width, info.height, derived=False)
        return await self._run("prepare", str(src), str(work_dir), str(max_bytes))

    async def blind(self, src: Path, dest: Path, *, seconds: float, max_bytes: int | None = None,
                    fps: Fraction | None = None, size: tuple[int, int] | None = None) -> Prepared:
        width, height = size or (0, 0)
        return await self._run("blind", str(src), str(dest), repr(seconds), str(max_bytes or 0), str(fps or 0),
                               str(width), str(height))

    async def probe(self, src: Path) -> MediaInfo:
        return await asyncio.to_thread(probe, src)


def _worker(argv: list[str]) -> int:
    """`python -m bot.media prepare SRC WORK_DIR MAX_BYTES` or `blind SRC DEST SECONDS MAX_BYTES`: JSON out."""
    try:
        if argv[0] == "prepare":
            done = prepare_for_post(argv[1], argv[2], int(argv[3]))
        elif argv[0] == "blind":
            size = (int(argv[6]), int(argv[7])) if int(argv[6]) else None
            done = blind_clip(argv[1], argv[2], seconds=float(argv[3]), max_bytes=int(argv[4]) or None,
                              fps=Fraction(argv[5]) or None, size=size)
        else:
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
            return 2
    except (MediaError, OSError, av.FFmpegError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps({**done.__dict__, "path": str(done.path)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
