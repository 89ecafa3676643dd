"""Reference images: fetched safely, checked, and cropped to the model's exact frame size.

Attachment URLs expire and may point anywhere, so the bot keeps its own copy, refuses hosts it
does not expect (and private addresses, against SSRF), caps bytes and time, and decodes with
Pillow's decompression-bomb guard before resizing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageOps

ALLOWED_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """The image cannot be used; `message` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_attachment(content_type: str | None, size: int, max_bytes: int) -> None:
    """Cheap checks on the attachment's metadata, before anything is charged."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ALLOWED_CONTENT_TYPES:
        raise ImageError("The reference image must be a PNG, JPEG or WebP picture.")
    if size > max_bytes:
        raise ImageError(f"The reference image is too large ({size / 1048576:.1f} MiB; at most "
                         f"{max_bytes / 1048576:.0f} MiB).")


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


def fit_image(data: bytes, size: tuple[int, int], dest: Path) -> Path:
    """Decode, crop to fill `size` (centre) and save as PNG; raise ImageError for bad input."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(BytesIO(data)) as image:
            if image.format not in ALLOWED_FORMATS:
                raise ImageError("The reference image must be a PNG, JPEG or WebP picture.")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError("The reference image has too many pixels.")
            image.load()
            fitted = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), size, Image.Resampling.LANCZOS)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("The reference image has too many pixels.") from None
    except Exception:
        raise ImageError("The reference image could not be read as a picture.") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    fitted.save(tmp, format="PNG")
    os.replace(tmp, dest)
    return dest
