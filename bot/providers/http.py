"""HTTP plumbing shared by the real provider adapters.

One `httpx.AsyncClient` per provider with explicit timeouts and connection limits; every
transport failure, 5xx, 429 and unreadable body becomes a `ProviderError` from the taxonomy, so
nothing an HTTP server does can crash the poller. Downloads stream to a temporary file with a
byte cap and are renamed into place only when complete, so a half-written video is never
delivered and a large one never sits in memory.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx

from bot import metrics
from bot.logs import PATTERNS
from bot.providers.base import ErrorKind, ProviderError

log = logging.getLogger(__name__)

USER_AGENT = "klingsora-discord-bot/0.1"
CHUNK_BYTES = 256 * 1024
MAX_RETRY_AFTER = 24 * 3600.0  # a hint beyond a day is a provider bug, not a plan
EXPIRED_STATUSES = (403, 404, 410)  # what object stores answer once an output link has lapsed
_DELTA_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Counts and times every request of a provider client into the process's metrics.

    Outcome is the status class (`2xx`, `4xx`, `5xx`…, with `429` apart) or `error` when no response
    came (timeout, refused connection). Time runs until the response headers, so a long streamed
    download counts as one quick request.
    """

    def __init__(self, provider: str, inner: httpx.AsyncBaseTransport) -> None:
        self.provider = provider
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        outcome = "error"
        try:
            response = await self.inner.handle_async_request(request)
            status = response.status_code
            outcome = "429" if status == 429 else f"{status // 100}xx"
            return response
        finally:
            recorder = metrics.current.get()
            if recorder is not None:
                recorder.provider_request(self.provider, outcome, time.monotonic() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_client(timeout: float, *, base_url: str = "", max_connections: int = 20,
                provider: str = "unknown") -> httpx.AsyncClient:
    """A client with bounded time and connections: a hung provider cannot stall the bot.

    `timeout` bounds each phase (connect, each read, each write, waiting for a pooled
    connection), so a stream that stops sending fails after `timeout` seconds even mid-body.
    Redirects are followed (output links redirect to CDNs); httpx drops `Authorization` when a
    redirect leaves the origin, so keys never reach a CDN.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max(1, max_connections // 2))
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        transport=InstrumentedTransport(provider, httpx.AsyncHTTPTransport(limits=limits)),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped at a day.

    Unparseable values (and "inf", "nan", negatives) give None: the poller's own backoff applies.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.match(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zones parse naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove credentials from text that may end up in an error message or a log line.

    Known values are replaced first; then common key shapes (`sk-…`, `r8_…`, `Bearer …`) in case a
    provider echoes a credential we were not told about.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


@contextlib.asynccontextmanager
async def transport_errors(what: str) -> AsyncIterator[None]:
    """Map httpx's failures (timeouts, refused/reset connections, protocol errors) to `transient`.

    The messages name only the exception type: httpx's own text can contain URLs.
    """
    try:
        yield
    except httpx.TimeoutException:
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider did not answer in time",
                            provider_code="timeout") from None
    except httpx.RequestError as error:  # TransportError (ReadError, RemoteProtocolError…), DecodingError…
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: connection failed ({type(error).__name__})",
                            provider_code="connection") from None


def json_body(response: httpx.Response, what: str) -> Any:
    """The JSON body, or a transient error when the provider sent something else (an HTML error page…)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider sent an unreadable answer "
                                                 f"(HTTP {response.status_code})", provider_code="bad_body") from None


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """Like `json_body`, but a JSON value that is not an object is unreadable too."""
    data = json_body(response, what)
    if not isinstance(data, dict):
        raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider sent an unexpected answer "
                                                 f"(HTTP {response.status_code})", provider_code="bad_body")
    return data


def maybe_json(response: httpx.Response) -> Any:
    """The JSON body when there is one (error bodies may be HTML), else None."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


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


POLICY_WORDS = ("flagged", "sensitive", "safety", "moderation", "content policy", "nsfw", "inappropriate",
                "risk control")
RETIRED_WORDS = ("deprecated", "retired", "shut down", "no longer available", "does not exist", "not found")
TRANSIENT_WORDS = ("timeout", "timed out", "temporar", "overloaded", "internal error", "try again",
                   "out of memory", "unavailable")


def classify_text(message: str, *, default: ErrorKind = ErrorKind.INVALID_REQUEST) -> ErrorKind:
    """Guess the taxonomy from a provider's free-text error (policy first: it must be said)."""
    lowered = message.lower()
    if any(word in lowered for word in POLICY_WORDS):
        return ErrorKind.CONTENT_POLICY
    if "model" in lowered and any(word in lowered for word in RETIRED_WORDS):
        return ErrorKind.MODEL_UNAVAILABLE
    if any(word in lowered for word in TRANSIENT_WORDS):
        return ErrorKind.TRANSIENT
    return default


def output_expired() -> ProviderError:
    """The output link lapsed: retrying cannot help, so this is refund-class (not retryable)."""
    return ProviderError(ErrorKind.INVALID_REQUEST, "the provider's output expired before it could be downloaded",
                         provider_code="output_expired")


def too_large(max_bytes: int) -> ProviderError:
    return ProviderError(ErrorKind.INVALID_REQUEST, f"the video is larger than the bot accepts ({max_bytes} bytes)",
                         provider_code="too_large")


async def stream_to_file(client: httpx.AsyncClient, url: str, dest: Path, *, max_bytes: int,
                         headers: dict[str, str] | None = None, what: str = "download",
                         expired_statuses: tuple[int, ...] = EXPIRED_STATUSES) -> int:
    """Stream `url` to `dest` and return its size; never holds the body in memory.

    Bytes go to a unique temporary file next to `dest` and are moved into place with `os.replace`
    only when the whole body arrived within `max_bytes`; on any failure the partial file is
    removed and `dest` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    total = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            async with transport_errors(what), client.stream("GET", url, headers=headers) as response:
                if response.status_code in expired_statuses:
                    raise output_expired()
                if response.status_code >= 400:
                    raise status_error(response.status_code, f"{what}: HTTP {response.status_code}",
                                       retry_after=parse_retry_after(response.headers.get("Retry-After")))
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise too_large(max_bytes)  # refuse before reading a byte
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    total += len(chunk)
                    if total > max_bytes:
                        raise too_large(max_bytes)
                    handle.write(chunk)
        if total == 0:
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider sent an empty file",
                                provider_code="empty_output")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return total
