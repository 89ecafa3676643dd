"""Rendering real MP4 files for the simulated provider (PyAV: H.264 video, AAC audio).

Pure and synchronous: callers run it in a worker thread. Static layers (background text) are
drawn once with Pillow; each frame only composites a moving bar, so a 12 s clip renders in a
second or two.
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

SAMPLE_RATE = 48_000


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration_seconds: float
    fps: float
    video_codec: str
    has_audio: bool
    audio_codec: str | None


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _base_layer(width: int, height: int, title: str, prompt: str, seed: int) -> Image.Image:
    """Background gradient with the model label and the wrapped prompt."""
    hue = (seed * 47) % 360
    top = _hsv(hue, 0.55, 0.35)
    bottom = _hsv((hue + 60) % 360, 0.6, 0.15)
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top),
                            gradient)
    draw = ImageDraw.Draw(image)
    scale = min(width, height) / 720
    title_font, body_font = _font(max(12, int(44 * scale))), _font(max(10, int(26 * scale)))
    margin = int(40 * scale)
    draw.text((margin, margin), title, fill=(255, 255, 255), font=title_font)
    chars = max(12, int(width / (14 * scale)))
    lines = textwrap.wrap(" ".join(prompt.split()), chars)[:8]
    if len(textwrap.wrap(" ".join(prompt.split()), chars)) > 8:
        lines[-1] = lines[-1][: max(0, chars - 1)] + "…"
    y = margin + int(70 * scale)
    for line in lines:
        draw.text((margin, y), line, fill=(230, 230, 240), font=body_font)
        y += int(34 * scale)
    draw.text((margin, height - margin - int(30 * scale)), "simulated render", fill=(180, 180, 190),
              font=body_font)
    return image


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue / 360, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


def render_video(
    path: Path,
    *,
    width: int,
    height: int,
    seconds: int,
    fps: int,
    audio: bool,
    title: str,
    prompt: str,
    first_frame: Path | None = None,
    seed: int = 0,
) -> None:
    """Write an MP4 of exactly width x height and `seconds` long; atomically replaces `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    base = _base_layer(width, height, title, prompt, seed)
    reference = None
    if first_frame is not None:
        with Image.open(first_frame) as opened:
            reference = opened.convert("RGB").resize((width, height))
    frames = seconds * fps
    fade = min(frames, fps)  # the first second fades from the reference into the animation
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height = width, height
            video.pix_fmt = "yuv420p"
            video.options = {"preset": "ultrafast", "crf": "28"}
            sound = container.add_stream("aac", rate=SAMPLE_RATE) if audio else None
            if sound is not None:
                sound.layout = "mono"
            bar_h = max(4, height // 60)
            for index in range(frames):
                frame_image = base.copy()
                draw = ImageDraw.Draw(frame_image)
                t = index / frames
                x = int((math.sin(t * math.tau * 2) * 0.4 + 0.5) * width)
                radius = max(8, min(width, height) // 12)
                draw.ellipse((x - radius, height // 2 - radius, x + radius, height // 2 + radius),
                             fill=_hsv((seed * 47 + index * 3) % 360, 0.7, 0.95))
                draw.rectangle((0, height - bar_h, int(width * (index + 1) / frames), height), fill=(255, 255, 255))
                if reference is not None and index < fade:
                    frame_image = Image.blend(reference, frame_image, index / fade)
                for packet in video.encode(av.VideoFrame.from_image(frame_image)):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if sound is not None:
                _write_audio(container, sound, seconds, seed)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_audio(container: av.container.OutputContainer, stream: av.AudioStream, seconds: int, seed: int) -> None:
    """A soft chord that changes every second, so the track is audibly 'synchronized'."""
    import array

    chunk = 1024
    total = seconds * SAMPLE_RATE
    roots = [220.0, 261.63, 293.66, 329.63, 196.0]
    pts = 0
    while pts < total:
        count = min(chunk, total - pts)
        samples = array.array("f")
        for offset in range(count):
            n = pts + offset
            root = roots[(n // SAMPLE_RATE + seed) % len(roots)]
            t = n / SAMPLE_RATE
            value = 0.15 * (math.sin(math.tau * root * t) + 0.6 * math.sin(math.tau * root * 1.5 * t))
            samples.append(value)
        frame = av.AudioFrame(format="flt", layout="mono", samples=count)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = Fraction(1, SAMPLE_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
        pts += count
    for packet in stream.encode():
        container.mux(packet)


def probe_video(path: Path) -> VideoInfo:
    """Read back what a file really contains (tests and the bot's own checks)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        if container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = float(video.duration * video.time_base) if video.duration else 0.0
        if video.duration and video.time_base:
            duration = float(video.duration * video.time_base)
        return VideoInfo(
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration_seconds=duration,
            fps=float(video.average_rate or 0),
            video_codec=video.codec_context.name,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )
