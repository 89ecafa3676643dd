"""Reference images: fetched safely, checked, and cropped to the model's exact frame size.

Attachment URLs expire and may point anywhere, so the bot keeps its own copy, refuses hosts it
does not expect (and private addresses, against SSRF), caps bytes and time. Pixels are capped
three times, because a 166 KiB PNG can declare 40 megapixels (about 300 MiB and 1.6 s to decode):
from the width and height Discord sends (before anything is charged), from the file header
before decoding, and by Pillow's own bomb guard. Decodes run on a small dedicated pool, so a
burst of jobs with images cannot take every core or gigabytes of memory at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PIXELS = 16_000_000  # 4000 x 4000; far above the largest output frame (1792 x 1024)
DECODE_WORKERS = 2
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above this and refuses above twice this, in any caller
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)  # refuse, not warn, between 1x and 2x
_decoder = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="image-decode")


class ImageError(ValueError):
    """The image cannot be used; `message` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def too_many_pixels(width: int, height: int) -> ImageError:
    return ImageError(f"The reference image is too large ({width}x{height}, {width * height / 1e6:.1f} megapixels; "
                      f"at most {MAX_PIXELS / 1e6:.0f}). Scale it down and try again.")


def check_attachment(content_type: str | None, size: int, max_bytes: int, *,
                     width: int | None = None, height: int | None = None) -> None:
    """Cheap checks on the attachment's metadata (type, bytes, Discord's width and height), before any charge."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ALLOWED_CONTENT_TYPES:
        raise ImageError("The reference image must be a PNG, JPEG or WebP picture.")
    if size > max_bytes:
        raise ImageError(f"The reference image is too large ({size / 1048576:.1f} MiB; at most "
                         f"{max_bytes / 1048576:.0f} MiB).")
    if width is not None and height is not None and width * height > MAX_PIXELS:
        raise too_many_pixels(width, height)


def _is_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return True
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            return True
    return False


async def check_url(url: str, allowed_hosts: set[str], *, allow_private: bool) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        raise ImageError("The reference image link is not usable.")
    if parts.scheme == "http" and not allow_private:
        raise ImageError("The reference image must come from Discord.")
    if allowed_hosts and host not in allowed_hosts:
        raise ImageError("The reference image must be uploaded to Discord.")
    if not allow_private and await asyncio.to_thread(_is_private, host):
        raise ImageError("The reference image must be uploaded to Discord.")


async def download(url: str, *, client: httpx.AsyncClient, max_bytes: int, seconds: float = 20.0) -> bytes:
    """Fetch at most `max_bytes` within `seconds`."""
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(seconds), client.stream("GET", url, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ImageError("The reference image could not be downloaded (it may have expired).")
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise ImageError("The reference image is too large.")
                chunks.append(chunk)
    except (TimeoutError, httpx.HTTPError):
        raise ImageError("The reference image could not be downloaded in time.") from None
    return b"".join(chunks)


async def fit_image_async(data: bytes, size: tuple[int, int], dest: Path) -> Path:
    """`fit_image` on the bounded decode pool (at most DECODE_WORKERS decodes at once, process-wide)."""
    return await asyncio.get_running_loop().run_in_executor(_decoder, fit_image, data, size, dest)


def fit_image(data: bytes, size: tuple[int, int], dest: Path) -> Path:
    """Decode, crop to fill `size` (centre) and save as PNG; raise ImageError for bad input."""
    try:
        # Only the three formats' parsers get to see the bytes; opening reads the header, not the pixels.
        with Image.open(BytesIO(data), formats=sorted(ALLOWED_FORMATS)) as image:
            if image.format not in ALLOWED_FORMATS:
                raise ImageError("The reference image must be a PNG, JPEG or WebP picture.")
            if image.width * image.height > MAX_PIXELS:
                raise too_many_pixels(image.width, image.height)
            image.load()
            fitted = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), size, Image.Resampling.LANCZOS)
    except ImageError:
        raise
    except UnidentifiedImageError:  # not one of the three formats (a GIF, an SVG, junk)
        raise ImageError("The reference image must be a PNG, JPEG or WebP picture.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"The reference image has too many pixels (at most {MAX_PIXELS / 1e6:.0f} "
                         "megapixels).") from None
    except Exception:
        raise ImageError("The reference image could not be read as a picture.") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    fitted.save(tmp, format="PNG")
    os.replace(tmp, dest)
    return dest
