"""Reference images: metadata checks, SSRF guard, byte cap, decoding and cropping."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from PIL import Image

from bot.images import ImageError, check_attachment, check_url, download, fit_image


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp", "image/PNG; charset=x"])
def test_allowed_types(content_type: str) -> None:
    check_attachment(content_type, 1000, 10_000)


@pytest.mark.parametrize("content_type", [None, "", "image/gif", "video/mp4", "text/html", "image/svg+xml"])
def test_refused_types(content_type: str | None) -> None:
    with pytest.raises(ImageError, match="PNG, JPEG or WebP"):
        check_attachment(content_type, 1000, 10_000)


def test_size_limit() -> None:
    with pytest.raises(ImageError, match="too large"):
        check_attachment("image/png", 10_001, 10_000)


@pytest.mark.parametrize(("source", "target"), [((400, 300), (1280, 720)), ((300, 900), (720, 1280)),
                                                 ((2000, 500), (720, 720)), ((100, 100), (1792, 1024))])
def test_fit_crops_to_exact_size(tmp_path: Path, source: tuple[int, int], target: tuple[int, int]) -> None:
    out = fit_image(png(*source), target, tmp_path / "ref.png")
    with Image.open(out) as image:
        assert image.size == target
        assert image.getpixel((target[0] // 2, target[1] // 2))[0] > 150  # still the red picture


def test_fit_accepts_jpeg_and_webp(tmp_path: Path) -> None:
    for fmt in ("JPEG", "WEBP"):
        out = fit_image(png(50, 50, fmt=fmt), (720, 720), tmp_path / f"{fmt}.png")
        assert out.exists()


@pytest.mark.parametrize("data", [b"not an image", b"GIF89a" + b"\x00" * 40, b"", png(10, 10)[:30]])
def test_garbage_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ImageError):
        fit_image(data, (720, 720), tmp_path / "x.png")


def test_gif_with_png_name_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="GIF")
    with pytest.raises(ImageError, match="PNG, JPEG or WebP"):
        fit_image(buffer.getvalue(), (720, 720), tmp_path / "x.png")


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")  # tiny file, 144 Mpx
    assert len(buffer.getvalue()) < 1_000_000
    with pytest.raises(ImageError, match="too many pixels"):
        fit_image(buffer.getvalue(), (720, 720), tmp_path / "x.png")


@pytest.mark.parametrize(
    "url",
    ["http://cdn.discordapp.com/a.png", "https://evil.example/a.png", "ftp://cdn.discordapp.com/a.png",
     "https://127.0.0.1/a.png", "file:///etc/passwd", "https:///nohost"],
)
async def test_url_guard_refuses_foreign_and_private(url: str) -> None:
    with pytest.raises(ImageError):
        await check_url(url, {"cdn.discordapp.com", "127.0.0.1"}, allow_private=False)


async def test_url_guard_allows_loopback_only_when_configured() -> None:
    await check_url("http://127.0.0.1:9/a.png", {"127.0.0.1"}, allow_private=True)


async def test_download_caps_bytes() -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x" * 65536)
        return response

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/gone", gone)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(ImageError, match="too large"):
                await download(f"http://127.0.0.1:{port}/big", client=client, max_bytes=1_000_000)
            with pytest.raises(ImageError, match="expired"):
                await download(f"http://127.0.0.1:{port}/gone", client=client, max_bytes=1_000_000)
    finally:
        await runner.cleanup()


def declared_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (a few rows of real data; the rest is missing)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(8000, 5000), (4001, 4000), (16_000_001, 1)])
def test_over_16_megapixels_is_refused_from_the_header(tmp_path: Path, width: int, height: int) -> None:
    """Refused before decoding: the bytes hold four rows, so a decode would have failed differently."""
    data = declared_png(width, height)
    assert len(data) < 200 * 1024
    import time

    started = time.perf_counter()
    with pytest.raises(ImageError, match="megapixels"):
        fit_image(data, (720, 720), tmp_path / "x.png")
    assert time.perf_counter() - started < 0.5
    assert not (tmp_path / "x.png").exists()


def test_exactly_16_megapixels_passes_the_metadata_check() -> None:
    check_attachment("image/png", 1000, 10**6, width=4000, height=4000)
    with pytest.raises(ImageError, match="megapixels"):
        check_attachment("image/png", 1000, 10**6, width=4000, height=4001)
    check_attachment("image/png", 1000, 10**6)  # Discord did not say: the header check still applies


async def test_decodes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sixteen jobs with images at once decode at most DECODE_WORKERS at a time."""
    import asyncio
    import threading
    import time

    from bot import images

    running = 0
    peak = 0
    lock = threading.Lock()
    real = images.fit_image

    def counting(data: bytes, size: tuple[int, int], dest: Path) -> Path:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.05)
            return real(data, size, dest)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(images, "fit_image", counting)
    data = png(64, 64)
    outs = await asyncio.gather(*(images.fit_image_async(data, (72, 72), tmp_path / f"{n}.png") for n in range(16)))
    assert all(out.exists() for out in outs)
    assert peak == images.DECODE_WORKERS
