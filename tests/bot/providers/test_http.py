"""Shared HTTP plumbing: Retry-After, redaction, error mapping and the capped streaming download."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import tracemalloc
from pathlib import Path

import httpx
import pytest

from bot.providers.base import ErrorKind, ProviderError
from bot.providers.http import (
    classify_text,
    json_body,
    json_object,
    make_client,
    parse_retry_after,
    redact,
    status_error,
    stream_to_file,
    transport_errors,
)
from tests.bot.providers.fakes import VIDEO_BYTES, FakeProviders

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date in the past: go now
        ("Wed, 21 Oct 2099 07:28:00 GMT", 24 * 3600.0),  # capped at a day
        ("999999999", 24 * 3600.0),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_date_without_zone_is_utc() -> None:
    header = email.utils.formatdate(NOW + 30)
    assert header.endswith("-0000")  # parses to a naive datetime
    assert parse_retry_after(header, now=NOW) == 30.0


def test_redact_known_values_and_key_shapes() -> None:
    text = "key sk-proj-abcdefghijkl token r8_abcdefghijkl header Bearer abc.def.ghijkl custom-secret-value"
    cleaned = redact(text, ["custom-secret-value", None, ""])
    for secret in ("sk-proj-abcdefghijkl", "r8_abcdefghijkl", "abc.def.ghijkl", "custom-secret-value"):
        assert secret not in cleaned
    assert "Bearer [redacted]" in cleaned


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, ErrorKind.RATE_LIMITED), (401, ErrorKind.AUTH), (403, ErrorKind.AUTH), (402, ErrorKind.QUOTA_OR_BILLING),
     (404, ErrorKind.MODEL_UNAVAILABLE), (410, ErrorKind.MODEL_UNAVAILABLE), (500, ErrorKind.TRANSIENT),
     (503, ErrorKind.TRANSIENT), (408, ErrorKind.TRANSIENT), (400, ErrorKind.INVALID_REQUEST),
     (422, ErrorKind.INVALID_REQUEST)],
)
def test_status_table(status: int, kind: ErrorKind) -> None:
    error = status_error(status, "m", model="x", retry_after=3.0)
    assert error.kind is kind
    if kind is ErrorKind.RATE_LIMITED:
        assert error.retry_after == 3.0


@pytest.mark.parametrize(
    ("text", "kind"),
    [("Input flagged as sensitive", ErrorKind.CONTENT_POLICY), ("safety checker", ErrorKind.CONTENT_POLICY),
     ("blocked by moderation", ErrorKind.CONTENT_POLICY), ("Failure to pass the risk control system",
                                                            ErrorKind.CONTENT_POLICY),
     ("The model has been deprecated", ErrorKind.MODEL_UNAVAILABLE), ("model not found", ErrorKind.MODEL_UNAVAILABLE),
     ("model was shut down", ErrorKind.MODEL_UNAVAILABLE), ("Prediction timed out", ErrorKind.TRANSIENT),
     ("CUDA out of memory", ErrorKind.TRANSIENT), ("duration must be 5 or 10", ErrorKind.INVALID_REQUEST)],
)
def test_classify_text(text: str, kind: ErrorKind) -> None:
    assert classify_text(text) is kind


def test_non_json_bodies_are_transient() -> None:
    html = httpx.Response(502, text="<html>Bad Gateway</html>")
    with pytest.raises(ProviderError) as raised:
        json_body(html, "x")
    assert raised.value.kind is ErrorKind.TRANSIENT and "HTTP 502" in raised.value.message
    with pytest.raises(ProviderError):
        json_object(httpx.Response(200, json=[1, 2]), "x")
    assert json_object(httpx.Response(200, json={"a": 1}), "x") == {"a": 1}


async def test_transport_failures_are_transient(fake: FakeProviders) -> None:
    fake.fail(r"/files/", hang=1.0)
    async with make_client(0.2) as client:
        with pytest.raises(ProviderError) as raised:
            async with transport_errors("probe"):
                await client.get(f"{fake.base}/files/x.mp4")
        assert raised.value.kind is ErrorKind.TRANSIENT and raised.value.provider_code == "timeout"
        fake.fail(r"/files/", reset=True)
        with pytest.raises(ProviderError) as raised:
            async with transport_errors("probe"):
                await client.get(f"{fake.base}/files/x.mp4")
        assert raised.value.kind is ErrorKind.TRANSIENT and raised.value.provider_code == "connection"
        with pytest.raises(ProviderError) as raised:
            async with transport_errors("probe"):
                await client.get("http://127.0.0.1:9/refused")
        assert raised.value.kind is ErrorKind.TRANSIENT and "127.0.0.1" not in raised.value.message


def test_client_has_explicit_limits() -> None:
    client = make_client(5.0)
    assert client.timeout.read == 5.0 and client.timeout.connect == 5.0 and client.timeout.pool == 5.0
    pool = client._transport.inner._pool  # type: ignore[attr-defined]  # inside the metrics wrapper
    assert pool._max_connections == 20


# -- streaming download ------------------------------------------------------------------------


async def ok_file(fake: FakeProviders) -> str:
    fake.tasks["t1"] = {"prompt": "ok", "polls": 0}
    return f"{fake.base}/files/t1.mp4"


async def test_download_writes_via_a_temp_file(fake: FakeProviders, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "v.mp4"
    async with make_client(2.0) as client:
        size = await stream_to_file(client, await ok_file(fake), dest, max_bytes=10**6)
    assert size == len(VIDEO_BYTES) and dest.read_bytes() == VIDEO_BYTES
    assert [p.name for p in dest.parent.iterdir()] == ["v.mp4"]


@pytest.mark.parametrize("declare", [False, True])
async def test_cap_on_a_streamed_body_removes_the_partial_file(fake: FakeProviders, tmp_path: Path,
                                                               declare: bool) -> None:
    dest = tmp_path / "v.mp4"
    dest.write_bytes(b"previous")  # a failed download leaves what was there alone
    url = f"{fake.base}/files/big.mp4?bytes={3 * 1024 * 1024}" + ("&declare=1" if declare else "")
    async with make_client(2.0) as client:
        with pytest.raises(ProviderError) as raised:
            await stream_to_file(client, url, dest, max_bytes=300_000)
    assert raised.value.provider_code == "too_large" and not raised.value.retryable
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"] and dest.read_bytes() == b"previous"


async def test_download_never_holds_the_body_in_memory(fake: FakeProviders, tmp_path: Path) -> None:
    total = 24 * 1024 * 1024
    async with make_client(5.0) as client:
        tracemalloc.start()
        try:
            size = await stream_to_file(client, f"{fake.base}/files/big.mp4?bytes={total}", tmp_path / "v.mp4",
                                        max_bytes=total)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert size == total == (tmp_path / "v.mp4").stat().st_size
    assert peak < 8 * 1024 * 1024  # the fake server shares the process; the body alone would be 24 MiB


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        ({"status": 404}, ErrorKind.INVALID_REQUEST, "output_expired"),
        ({"status": 410}, ErrorKind.INVALID_REQUEST, "output_expired"),
        ({"status": 403}, ErrorKind.INVALID_REQUEST, "output_expired"),
        ({"status": 503}, ErrorKind.TRANSIENT, None),
        ({"status": 429, "headers": {"Retry-After": "9"}}, ErrorKind.RATE_LIMITED, None),
        ({"reset": True}, ErrorKind.TRANSIENT, "connection"),
        ({"hang": 1.0}, ErrorKind.TRANSIENT, "timeout"),
    ],
)
async def test_download_failures(fake: FakeProviders, tmp_path: Path, fault: dict, kind: ErrorKind,
                                 code: str | None) -> None:
    url = await ok_file(fake)
    fake.fail(r"/files/", **fault)
    async with make_client(0.3) as client:
        with pytest.raises(ProviderError) as raised:
            await stream_to_file(client, url, tmp_path / "v.mp4", max_bytes=10**6)
    assert raised.value.kind is kind and raised.value.provider_code == code
    if kind is ErrorKind.RATE_LIMITED:
        assert raised.value.retry_after == 9.0
    assert list(tmp_path.iterdir()) == []


async def test_empty_download_is_an_error(fake: FakeProviders, tmp_path: Path) -> None:
    async with make_client(2.0) as client:
        with pytest.raises(ProviderError) as raised:
            await stream_to_file(client, f"{fake.base}/files/big.mp4?bytes=0", tmp_path / "v.mp4", max_bytes=10)
    assert raised.value.provider_code == "empty_output" and list(tmp_path.iterdir()) == []


async def test_mid_body_stall_times_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A server that sends headers and then nothing: the per-read timeout ends it."""
    from aiohttp import web

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"abc")
        await asyncio.sleep(2)
        return response

    app = web.Application()
    app.router.add_get("/v", stall)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with make_client(0.3) as client:
            with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
                await stream_to_file(client, f"http://127.0.0.1:{port}/v", tmp_path / "v.mp4", max_bytes=100)
        assert raised.value.provider_code == "timeout" and list(tmp_path.iterdir()) == []
    finally:
        await runner.cleanup()
