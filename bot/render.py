"""Rendering real MP4 files for the simulated provider (PyAV: H.264 video, AAC audio).

Pure and synchronous, with no module state: callers run `render_video` in a worker thread. The
static layers (scrolling gradient strip, text panel, moving sprite) are drawn once with Pillow, so
each frame is a crop plus two small pastes; a 720x1280 12 s clip at 12 fps renders in about a second.
The file appears at its final path only when complete (temp file + `os.replace`).
"""

from __future__ import annotations

import array
import colorsys
import math
import os
import tempfile
import unicodedata
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont, ImageOps

SAMPLE_RATE = 48_000
AUDIO_FRAME = 1024  # AAC's frame size: no resampling or re-chunking inside PyAV
GRADIENT_PERIOD = 4.0  # seconds for the background gradient to scroll one full cycle
# I-V-vi-IV in C, one chord a second; integer frequencies keep each one-second buffer seamless.
CHORDS: tuple[tuple[int, ...], ...] = ((262, 330, 392), (196, 247, 294), (220, 262, 330), (175, 220, 262))
ELLIPSIS = "…"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def render_video(
    path: Path | str,
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
    show_length: bool = True,
) -> None:
    """Write an H.264 MP4 of exactly `width` x `height` and `seconds * fps` frames to `path`.

    With `audio`, an AAC track of the same length is added; without it the file has no audio
    stream at all (Kling has none). `first_frame` (any size, scaled to fit) opens the clip and
    fades into the animation. Without `show_length` the clip burns in neither its total length nor
    a progress bar (a blind /compare trims clips to one length; "/ 5 s" would name the model).
    The `moov` box is written first (fast start). A crash never leaves a partial file at `path`.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"frame size must be positive and even for yuv420p (got {width}x{height})")
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive (got {seconds} s at {fps} fps)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        _encode(tmp, width=width, height=height, seconds=seconds, fps=fps, audio=audio, title=title,
                prompt=prompt, first_frame=first_frame, seed=seed, show_length=show_length)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- video ----------------------------------------------------------------------------------------


def _encode(tmp: Path, *, width: int, height: int, seconds: int, fps: int, audio: bool, title: str, prompt: str,
            first_frame: Path | None, seed: int, show_length: bool = True) -> None:
    scale = min(width, height) / 720
    hue = (seed * 47) % 360
    strip = _gradient_strip(width, height, hue)
    panel, panel_at = _text_panel(width, height, scale, title, prompt)
    sprite = _sprite(max(12, int(min(width, height) * 0.09)), (hue + 180) % 360)
    reference = _reference(first_frame, width, height) if first_frame is not None else None
    small = _font(max(12, int(24 * scale)))
    bar_height = max(4, height // 90)
    margin = int(40 * scale)

    total = seconds * fps
    hold = max(1, fps // 2) if reference is not None else 0  # reference alone, then a one-second fade
    fade = max(1, fps)
    chords = _ChordTrack(seed) if audio else None
    time_base = Fraction(1, fps)

    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = time_base
        video.options = {"preset": "ultrafast", "crf": "26", "g": str(fps * 2)}
        sound = None
        if chords is not None:
            sound = container.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
            sound.codec_context.time_base = Fraction(1, SAMPLE_RATE)
        samples_written = 0

        for index in range(total):
            t = index / fps
            offset = int((t / GRADIENT_PERIOD % 1.0) * 2 * height)
            frame = strip.crop((0, offset, width, offset + height))
            x, y = _orbit(t, width, height, sprite.width)
            frame.paste(sprite, (x, y), sprite)
            frame.paste(panel, panel_at, panel)
            draw = ImageDraw.Draw(frame)
            if show_length:
                draw.rectangle((0, height - bar_height, round(width * (index + 1) / total), height),
                               fill=(255, 255, 255))
            stamp = f"{t:4.1f} s / {seconds} s" if show_length else f"{t:4.1f} s"
            draw.text((width - margin, height - bar_height - margin // 2), stamp, fill=(235, 235, 245), font=small,
                      anchor="rd")
            if reference is not None and index < hold + fade:
                alpha = max(0.0, (index - hold + 1) / (fade + 1))
                frame = Image.blend(reference, frame, alpha) if alpha > 0 else reference.copy()
            picture = av.VideoFrame.from_image(frame).reformat(format="yuv420p")
            picture.pts, picture.time_base = index, time_base
            for packet in video.encode(picture):
                container.mux(packet)
            if sound is not None and chords is not None:  # keep audio interleaved with the video
                until = (index + 1) * SAMPLE_RATE // fps
                samples_written = _write_audio(container, sound, chords, samples_written, until,
                                               final=index == total - 1)

        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            for packet in sound.encode():
                container.mux(packet)


def _gradient_strip(width: int, height: int, hue: float) -> Image.Image:
    """A vertical gradient twice the frame height that loops, so scrolling it is a plain crop."""
    ramp = Image.linear_gradient("L").resize((width, height))
    mask = Image.new("L", (width, height * 2))
    mask.paste(ramp, (0, 0))
    mask.paste(ImageOps.flip(ramp), (0, height))
    top = Image.new("RGB", mask.size, _hsv(hue, 0.55, 0.45))
    bottom = Image.new("RGB", mask.size, _hsv((hue + 70) % 360, 0.65, 0.18))
    strip = Image.composite(bottom, top, mask)
    # One more screen at the end, so a crop at any offset in [0, 2 * height) stays inside and loops seamlessly.
    looped = Image.new("RGB", (width, height * 3))
    looped.paste(strip, (0, 0))
    looped.paste(strip.crop((0, 0, width, height)), (0, height * 2))
    return looped


def _text_panel(width: int, height: int, scale: float, title: str, prompt: str) -> tuple[Image.Image, tuple[int, int]]:
    """The model label and the wrapped prompt on a translucent panel (RGBA, pasted every frame)."""
    margin, pad = int(40 * scale), int(24 * scale)
    title_font, body_font = _font(max(14, int(46 * scale))), _font(max(11, int(28 * scale)))
    line_height = int(body_font.size * 1.3) if isinstance(body_font, ImageFont.FreeTypeFont) else 14
    title_height = int(title_font.size * 1.4) if isinstance(title_font, ImageFont.FreeTypeFont) else 18
    inner = width - 2 * margin - 2 * pad
    max_lines = max(2, int((height * 0.5 - title_height - 2 * pad) / line_height))
    lines = wrap_text(_clean(prompt), body_font, inner, max_lines)
    panel_height = 2 * pad + title_height + line_height * len(lines)
    panel = Image.new("RGBA", (width - 2 * margin, panel_height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(panel)
    draw.rounded_rectangle((0, 0, panel.width - 1, panel_height - 1), radius=int(18 * scale) or 1,
                           fill=(10, 10, 20, 150))
    draw.text((pad, pad), _fit_line(_clean(title), title_font, inner), fill=(255, 255, 255, 255), font=title_font)
    y = pad + title_height
    for line in lines:
        draw.text((pad, y), line, fill=(232, 232, 242, 255), font=body_font)
        y += line_height
    return panel, (margin, margin)


def _sprite(radius: int, hue: float) -> Image.Image:
    """A glowing disc; drawn once, pasted at a new place each frame."""
    size = radius * 2
    sprite = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    r, g, b = _hsv(hue, 0.7, 1.0)
    for step in range(radius, 0, -max(1, radius // 8)):
        alpha = int(255 * (1 - step / radius) ** 0.5) if step < radius else 40
        draw.ellipse((radius - step, radius - step, radius + step, radius + step), fill=(r, g, b, max(40, alpha)))
    return sprite


def _orbit(t: float, width: int, height: int, size: int) -> tuple[int, int]:
    """A Lissajous path over the lower part of the frame, below the text panel."""
    x = (math.sin(t * 1.3) * 0.5 + 0.5) * (width - size)
    top = height * 0.55
    y = top + (math.sin(t * 2.1 + 1.0) * 0.5 + 0.5) * (height * 0.9 - top - size)
    return int(x), int(max(0, y))


def _reference(first_frame: Path, width: int, height: int) -> Image.Image:
    """The user's image scaled to fit the frame (letterboxed, never stretched)."""
    with Image.open(first_frame) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    fitted = ImageOps.contain(image, (width, height))
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


# -- text -----------------------------------------------------------------------------------------


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _clean(text: str) -> str:
    """Printable text on one line: no control characters, no lone surrogates."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join("".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split())


def wrap_text(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap by rendered width; words longer than a line are split; overflow ends in …."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(lines) <= max_lines and font.getlength(word) > max_width:
            cut = _longest_prefix(word, font, max_width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _with_ellipsis(lines[-1], font, max_width)
    return lines


def _fit_line(text: str, font: Font, max_width: int) -> str:
    return text if font.getlength(text) <= max_width else _with_ellipsis(text, font, max_width)


def _with_ellipsis(text: str, font: Font, max_width: int) -> str:
    cut = _longest_prefix(text + ELLIPSIS, font, max_width - font.getlength(ELLIPSIS), at_least=0)
    return text[:cut].rstrip() + ELLIPSIS


def _longest_prefix(text: str, font: Font, max_width: float, *, at_least: int = 1) -> int:
    """Binary search for the longest prefix that fits (at least one char, so wrapping always advances)."""
    low, high = at_least, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue / 360, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


# -- audio ----------------------------------------------------------------------------------------


class _ChordTrack:
    """A soft chord progression, one chord a second with a gentle pluck, as 32-bit float mono."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._seconds: dict[int, bytes] = {}
        self._sine = [math.sin(math.tau * n / SAMPLE_RATE) for n in range(SAMPLE_RATE)]

    def _second(self, chord: int) -> bytes:
        """One second of one chord; integer frequencies make every buffer start and end in phase."""
        if chord not in self._seconds:
            freqs, table = CHORDS[chord], self._sine
            attack = SAMPLE_RATE // 40
            samples = array.array("f")
            for n in range(SAMPLE_RATE):
                envelope = math.exp(-1.2 * n / SAMPLE_RATE) * (0.3 + 0.7 * min(1.0, n / attack))
                value = sum(table[(f * n) % SAMPLE_RATE] for f in freqs) + 0.3 * table[(2 * freqs[0] * n) % SAMPLE_RATE]
                samples.append(0.12 * envelope * value)
            self._seconds[chord] = samples.tobytes()
        return self._seconds[chord]

    def samples(self, start: int, stop: int) -> bytes:
        """Raw samples [start, stop) of the track."""
        out = bytearray()
        while start < stop:
            second, within = divmod(start, SAMPLE_RATE)
            take = min(stop - start, SAMPLE_RATE - within)
            buffer = self._second((second + self.seed) % len(CHORDS))
            out += buffer[within * 4:(within + take) * 4]
            start += take
        return bytes(out)


def _write_audio(container: av.container.OutputContainer, stream: av.AudioStream, track: _ChordTrack,
                 start: int, until: int, *, final: bool) -> int:
    """Encode whole AAC frames up to sample `until`; the final call also writes the short tail."""
    while until - start >= AUDIO_FRAME or (final and until > start):
        count = min(AUDIO_FRAME, until - start)
        frame = av.AudioFrame(format="flt", layout="mono", samples=count)
        frame.planes[0].update(track.samples(start, start + count))
        frame.sample_rate = SAMPLE_RATE
        frame.pts, frame.time_base = start, Fraction(1, SAMPLE_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
        start += count
    return start
