"""Re-encoding an over-limit video to fit: time and peak RSS for a 10 s 1080p clip to 10 and 25 MiB.

Each encode runs in a process of its own, so its peak RSS (VmHWM) is its alone. Ours is
`bot.media.prepare_for_post` (target bitrate from the limit and duration, verified, one retry
lower). The baseline is what a competent peer writes first: one constant-quality encode at
FFmpeg's defaults (libx264 CRF 23, preset medium), which may or may not land under the limit.

The source is 1080p30 with fine moving grain (like real renders, it does not compress to a few
MiB), encoded at high quality so that it is over both limits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av

from bench.common import table

MiB = 1024 * 1024
WIDTH, HEIGHT, FPS, SECONDS = 1920, 1080, 30, 10
TARGETS = (10 * MiB, 25 * MiB)


def make_source(path: Path, *, width: int = WIDTH, height: int = HEIGHT, fps: int = FPS,
                seconds: int = SECONDS) -> None:
    """A grainy moving picture with a stereo AAC track, the index at the end (as providers write it)."""
    import os

    grain = bytes(100 + (value >> 4) for value in range(256))  # random bytes to 100..115: fine grain
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        video.options = {"preset": "ultrafast", "crf": "20"}
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        ramp = bytes(range(256)) * (width // 256 + 2)
        for index in range(seconds * fps):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = bytearray(os.urandom(width * height).translate(grain))
            shift = index * 8 % 256
            band = (index * 12) % (height - 64)
            for row in range(band, band + 64):  # a bright bar sweeping down: motion the encoder must follow
                luma[row * width:(row + 1) * width] = ramp[shift:shift + width]
            frame.planes[0].update(bytes(luma))
            frame.planes[1].update(bytes([128]) * (width * height // 4))
            frame.planes[2].update(bytes([128]) * (width * height // 4))
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
            samples = 48_000 // fps
            sound = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
            for plane in sound.planes:
                plane.update(bytes(4 * samples))
            sound.sample_rate, sound.pts, sound.time_base = 48_000, index * samples, Fraction(1, 48_000)
            out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(method: str, src: str, work: str, target: int) -> None:
    """One encode in this process; prints time, peak RSS and size as JSON."""
    import logging
    import time

    from bot import media

    encodes: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("re-encode"):
                encodes.append(record.getMessage())

    logging.getLogger("bot.media").addHandler(Count())
    logging.getLogger("bot.media").setLevel(logging.INFO)
    before = _peak_rss_mib()
    started = time.perf_counter()
    if method == "ours":
        prepared = media.prepare_for_post(Path(src), Path(work), target)
        size, dims = prepared.size, f"{prepared.width}x{prepared.height}"
    else:
        dest = Path(work) / "crf23.mp4"
        media.transcode(src, dest, crf=23, preset="medium", audio_bitrate=128_000)
        info = media.probe(dest)
        size, dims = info.size, f"{info.width}x{info.height}"
        encodes.append("crf")
    print(json.dumps({"encodes": len(encodes), "seconds": time.perf_counter() - started, "peak_mib": _peak_rss_mib(),
                      "base_mib": before, "size": size, "dims": dims}))


async def run_child(method: str, src: Path, work: Path, target: int) -> dict[str, float | str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from bench.transcode import child; "
        "child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))",
        method, str(src), str(work), str(target), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{method} encode failed ({process.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "source.mp4"
        await asyncio.to_thread(make_source, src)
        source_mib = src.stat().st_size / MiB
        rows = []
        for target in TARGETS:
            results = {}
            for method in ("ours", "baseline"):
                work = Path(tmp) / f"{method}-{target}"
                work.mkdir()
                results[method] = await run_child(method, src, work, target)
            for method, label in (("ours", "ours (fit to limit)"), ("baseline", "CRF 23 medium")):
                result = results[method]
                size = float(result["size"])
                rows.append([f"{target // MiB} MiB", label, f"{float(result['seconds']):.1f}",
                             f"{float(result['peak_mib']):.0f}", f"{size / MiB:.1f}",
                             "yes" if size <= target else "NO", str(result["encodes"]), str(result["dims"])])
    table(f"Re-encode to fit: {SECONDS} s {WIDTH}x{HEIGHT}@{FPS} source of {source_mib:.0f} MiB, "
          "each encode in its own process",
          ["limit", "method", "time s", "peak RSS MiB", "size MiB", "fits", "encodes", "output"], rows)


if __name__ == "__main__":
    asyncio.run(main())
