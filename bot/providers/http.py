"""HTTP plumbing shared by the real provider adapters.

One `httpx.AsyncClient` per provider with explicit timeouts and connection limits; every
transport failure, 5xx, 429 and unreadable body becomes a `ProviderError` from the taxonomy, so
nothing an HTTP server does can crash the poller. Downloads stream to a temporary file with a
byte cap and are renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx

from bot.providers.base import ErrorKind, ProviderError

USER_AGENT = "klingsora-discord-bot/0.1"


def make_client(timeout: float, *, base_url: str = "", max_connections: int = 20) -> httpx.AsyncClient:
    """A client with bounded time and connections: a hung provider cannot stall the bot."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 2),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove credentials from text that may end up in an error message or a log line."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


@contextlib.asynccontextmanager
async def transport_errors(what: str) -> AsyncIterator[None]:
    """Map httpx's transport failures (timeouts, resets, protocol errors) to `transient`."""
    try:
        yield
    except httpx.TimeoutException:
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider did not answer in time") from None
    except httpx.TransportError as error:
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: connection failed ({type(error).__name__})") from None


def json_body(response: httpx.Response, what: str) -> Any:
    """The JSON body, or a transient error when the provider sent something else (an HTML error page...)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider sent an unreadable answer "
                                                 f"(HTTP {response.status_code})") from None


def status_error(status: int, message: str, *, model: str | None = None, retry_after: float | None = None,
                 code: str | None = None) -> ProviderError:
    """The taxonomy's reading of an HTTP status when the body says nothing more specific."""
    if status == 429:
        return ProviderError(ErrorKind.RATE_LIMITED, message, retry_after=retry_after, provider_code=code)
    if status in (401, 403):
        return ProviderError(ErrorKind.AUTH, message, provider_code=code)
    if status == 402:
        return ProviderError(ErrorKind.QUOTA_OR_BILLING, message, provider_code=code)
    if status in (404, 410):
        return ProviderError(ErrorKind.MODEL_UNAVAILABLE, message, model=model, provider_code=code)
    if status >= 500 or status == 408:
        return ProviderError(ErrorKind.TRANSIENT, message, retry_after=retry_after, provider_code=code)
    return ProviderError(ErrorKind.INVALID_REQUEST, message, provider_code=code)


POLICY_WORDS = ("flagged", "sensitive", "safety", "moderation", "content policy", "nsfw", "inappropriate")
RETIRED_WORDS = ("deprecated", "retired", "shut down", "no longer available", "does not exist", "not found")


def classify_text(message: str, *, default: ErrorKind = ErrorKind.INVALID_REQUEST) -> ErrorKind:
    """Guess the taxonomy from a provider's free-text error."""
    lowered = message.lower()
    if any(word in lowered for word in POLICY_WORDS):
        return ErrorKind.CONTENT_POLICY
    if "model" in lowered and any(word in lowered for word in RETIRED_WORDS):
        return ErrorKind.MODEL_UNAVAILABLE
    if any(word in lowered for word in ("timeout", "timed out", "temporar", "overloaded", "internal error")):
        return ErrorKind.TRANSIENT
    return default


async def stream_to_file(client: httpx.AsyncClient, url: str, dest: Path, *, max_bytes: int,
                         headers: dict[str, str] | None = None, what: str = "download") -> int:
    """Stream `url` to `dest` (temp file + rename), never holding the body in memory."""
    tmp = dest.with_name(f".{dest.name}.part")
    total = 0
    try:
        async with transport_errors(what), client.stream("GET", url, headers=headers) as response:
            if response.status_code in (403, 404, 410):
                raise ProviderError(ErrorKind.INVALID_REQUEST, "the provider's output expired before it could be "
                                    "downloaded", provider_code="output_expired")
            if response.status_code >= 400:
                raise status_error(response.status_code, f"{what}: HTTP {response.status_code}",
                                   retry_after=parse_retry_after(response.headers.get("Retry-After")))
            with tmp.open("wb") as handle:
                async for chunk in response.aiter_bytes(256 * 1024):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ProviderError(ErrorKind.INVALID_REQUEST,
                                            f"the video is larger than the bot accepts ({max_bytes} bytes)")
                    handle.write(chunk)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return total
