"""OpenAI Videos API (Sora). The public service shut down on 2026-09-24; compatible endpoints may
remain behind OPENAI_BASE_URL, so a 404/410 reads as `model_unavailable`, clearly.

Facts from PROVIDERS.md and specs/openai-videos-openapi.json: `seconds` is a string, `size` is
"WxH", `input_reference` is an image file of exactly that size (multipart), the video bytes are
at `/videos/{id}/content`. A user's own key is used for that job's requests only.

Mapping decisions:
- 401/403 with the operator's key -> `auth` (alert the operator). With the user's own key it is
  the user's problem: `invalid_request` with provider_code `user_key_rejected`.
- 429 `insufficient_quota` (or a billing code) -> `quota_or_billing`; other 429s -> `rate_limited`.
- 404/410 or `model_not_found` -> `model_unavailable` naming the model and the base URL.
- `moderation_blocked` (or policy words in a 400) -> `content_policy`.
- There is no cancel endpoint (DELETE only applies to completed or failed videos): `cancel` is False.
- `GET /videos` is walked newest first by one loop (`_walk`) for `find` and `sweep`. Its `created_at`
  is whole seconds, so a video counts as older than a time only when its whole second is, and a walk
  cut short vouches only from the second after the oldest video it read (its twins may be next).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import (
    ErrorKind,
    JobContext,
    Listing,
    ProviderError,
    ProviderState,
    StatusResult,
    SweepResult,
    VideoProvider,
    configured_model_id,
)
from bot.providers.http import (
    classify_text,
    json_object,
    make_client,
    maybe_json,
    parse_retry_after,
    redact,
    status_error,
    stream_to_file,
    transport_errors,
)
from bot.requests import AnyRequest, SoraRequest

log = logging.getLogger(__name__)

STATES = {
    "queued": ProviderState.QUEUED,
    "in_progress": ProviderState.RUNNING,
    "completed": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
}
POLICY_CODES = {"moderation_blocked", "content_policy_violation", "content_filter", "input_moderation",
                "output_moderation"}
QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"}
RETIRED_CODES = {"model_not_found", "model_deprecated"}
TRANSIENT_CODES = {"server_error", "internal_error", "timeout", "service_unavailable"}
FIND_MARGIN_SECONDS = 300.0  # clock skew between us and the provider when matching by time
FIND_MAX_PAGES = 5


def fit_reference(path: str | Path, size: tuple[int, int]) -> bytes:
    """The first frame as PNG bytes of exactly `size` (the API rejects other sizes).

    The bot already fits first frames; this re-checks with Pillow and crops-to-fill when a file
    of another size slipped through.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image) or image
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        raise ProviderError(ErrorKind.INVALID_REQUEST, "the reference image could not be read",
                            provider_code="bad_reference") from None
    fitted = rgb if rgb.size == size else ImageOps.fit(rgb, size, method=Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    fitted.save(buffer, format="PNG")
    return buffer.getvalue()


class OpenAIVideosProvider(VideoProvider):
    """Sora through OpenAI's Videos API (or a compatible endpoint at OPENAI_BASE_URL)."""

    name = "openai"
    can_sweep = True

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None,
                 base_url: str | None = None) -> None:
        self.settings = settings
        if settings.openai_api_key is None:  # every job runs on its user's key: no operator account to list
            self.can_sweep = False
        self.base = (base_url or settings.openai_base_url).rstrip("/")
        self._owns_client = client is None
        self.client = client or make_client(settings.provider_timeout_seconds, provider="openai")
        self._warned: set[str] = set()

    def model_id(self, request: AnyRequest) -> str:
        return configured_model_id(self.settings, self.name, request)

    def _key(self, ctx: JobContext | None) -> str:
        if ctx is not None and ctx.api_key is not None:
            return ctx.api_key.get_secret_value()
        if self.settings.openai_api_key is None:
            raise ProviderError(ErrorKind.AUTH, "OPENAI_API_KEY is not set")
        return self.settings.openai_api_key.get_secret_value()

    def _headers(self, ctx: JobContext | None) -> dict[str, str]:
        """The operator's key, or the job's own key for that job only (never stored on the client)."""
        return {"Authorization": f"Bearer {self._key(ctx)}"}

    def _secrets(self, ctx: JobContext | None) -> list[str | None]:
        operator = self.settings.openai_api_key
        return [operator.get_secret_value() if operator else None,
                ctx.api_key.get_secret_value() if ctx and ctx.api_key else None]

    def _error(self, response: httpx.Response, ctx: JobContext | None, model: str | None) -> ProviderError:
        """The `{"error": {message, type, param, code}}` envelope mapped onto the taxonomy."""
        body = maybe_json(response)
        error: dict[str, Any] = body["error"] if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        status = response.status_code
        message = redact(str(error.get("message") or f"HTTP {status}")[:500], self._secrets(ctx))
        code = str(error.get("code") or "") or None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        own_key = ctx is not None and ctx.api_key is not None
        if code in QUOTA_CODES or status == 402:
            prefix = "your OpenAI account: " if own_key else ""
            return ProviderError(ErrorKind.QUOTA_OR_BILLING, prefix + message, provider_code=code)
        if status in (401, 403) and own_key:
            return ProviderError(ErrorKind.INVALID_REQUEST, f"OpenAI rejected your own API key ({message})",
                                 provider_code="user_key_rejected")
        if code in POLICY_CODES or (status == 400 and classify_text(message) is ErrorKind.CONTENT_POLICY):
            return ProviderError(ErrorKind.CONTENT_POLICY, message, provider_code=code)
        retired = code in RETIRED_CODES or status in (404, 410) or (
            status == 400 and classify_text(message) is ErrorKind.MODEL_UNAVAILABLE)
        if retired:
            what = f"model {model}" if model else "the Videos API"  # a list names no model
            return ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"{what} is not available at {self.base} ({message})",
                                 model=model, provider_code=code or f"http_{status}")
        return status_error(status, message, model=model, retry_after=retry_after, code=code)

    async def submit(self, ctx: JobContext) -> str:
        request = ctx.request
        if not isinstance(request, SoraRequest):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "OpenAI's Videos API only renders Sora requests")
        model = self.model_id(request)
        fields = {"prompt": request.prompt, "model": model, "seconds": str(request.seconds),
                  "size": request.size_text()}
        headers = self._headers(ctx)
        if request.reference_image:
            image = await asyncio.to_thread(fit_reference, request.reference_image, request.size)
            async with transport_errors("openai submit"):
                response = await self.client.post(
                    f"{self.base}/videos", data=fields, headers=headers,
                    files={"input_reference": ("reference.png", image, "image/png")},
                )
        else:
            async with transport_errors("openai submit"):
                response = await self.client.post(f"{self.base}/videos", json=fields, headers=headers)
        if response.status_code >= 400:
            raise self._error(response, ctx, model)
        data = json_object(response, "openai submit")
        if not data.get("id"):
            raise ProviderError(ErrorKind.TRANSIENT, "openai submit: no video id in the answer")
        return str(data["id"])

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        """Videos an earlier submit of this job created. The API has no metadata field, so: list the key's
        videos newest first back to the submit intent (minus a margin for clock skew) and keep those with
        exactly our prompt, model, size and seconds. Oldest first."""
        request = ctx.request
        if not isinstance(request, SoraRequest):
            return []
        model = self.model_id(request)
        since = (ctx.submitted_since or 0.0) - FIND_MARGIN_SECONDS
        wanted = (request.prompt, model, request.size_text(), str(request.seconds))
        listing = await self._walk(since, max_pages=FIND_MAX_PAGES, ctx=ctx, model=model)
        found = [(created or 0.0, str(item["id"])) for created, item in listing.items
                 if (item.get("prompt"), item.get("model"), item.get("size"), str(item.get("seconds"))) == wanted]
        return [vid for _, vid in sorted(found)]

    async def sweep(self, since: float, *, max_pages: int) -> SweepResult:
        """Every video of the operator's project created since `since`, with its state and progress.

        One list request answers for up to 100 videos, so the poller asks this instead of polling each
        render. States map as in `status`. Only the operator's key is used: a job on a user's own key
        lives in that user's project and is not listed here (the poller polls it by itself).
        """
        listing = await self._walk(since, max_pages=max_pages, ctx=None, model=None)
        states: dict[str, StatusResult] = {}
        for _, item in listing.items:
            model = item.get("model") if isinstance(item.get("model"), str) else None
            states[str(item["id"])] = self._observe(item, None, model, video_id=str(item["id"]), hint=None)
        return SweepResult(states=states, reaches_back_to=listing.reaches_back_to, pages=listing.pages)

    async def _walk(self, since: float, *, max_pages: int, ctx: JobContext | None, model: str | None) -> Listing:
        """Read `GET /videos` newest first (`after` = the previous page's last id while `has_more`) until a
        video created before `since`, the last page, or `max_pages` pages; with `ctx`'s key when it has one.

        `reaches_back_to` is `since` when the walk got there; otherwise the second after the oldest
        created_at read (or the walk's start when none was dated): older videos were not seen. Items
        without a usable created_at are kept (they count as seen).
        """
        started = time.time()
        items: list[tuple[float | None, dict[str, Any]]] = []
        oldest: float | None = None
        pages = 0
        after: str | None = None
        while pages < max_pages:
            params = {"limit": "100", "order": "desc"} | ({"after": after} if after else {})
            async with transport_errors("openai list"):
                response = await self.client.get(f"{self.base}/videos", params=params, headers=self._headers(ctx))
            pages += 1
            if response.status_code >= 400:
                raise self._error(response, ctx, model)
            page = json_object(response, "openai list")
            data = page.get("data")
            reached = False
            last: str | None = None
            for item in data if isinstance(data, list) else []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                last = str(item["id"])
                created = _epoch(item.get("created_at"))
                if created is not None and created + 1 <= since:  # its whole second lies before `since`
                    reached = True
                    break
                if created is not None:
                    oldest = created if oldest is None else min(oldest, created)
                items.append((created, item))
            if reached or not page.get("has_more"):
                return Listing(items, pages, since)
            after = page["last_id"] if isinstance(page.get("last_id"), str) and page["last_id"] else last
            if after is None:  # more to read, but nothing to continue after
                break
        return Listing(items, pages, oldest + 1 if oldest is not None else max(since, started))

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        model = self.model_id(ctx.request)
        async with transport_errors("openai status"):
            response = await self.client.get(f"{self.base}/videos/{provider_job_id}", headers=self._headers(ctx))
        if response.status_code >= 400:
            raise self._error(response, ctx, model)
        data = json_object(response, "openai status")
        return self._observe(data, ctx, model, video_id=provider_job_id, hint=poll_hint(response.headers))

    def _observe(self, data: dict[str, Any], ctx: JobContext | None, model: str | None, *, video_id: str,
                 hint: float | None) -> StatusResult:
        """One video object (from a poll or a list page) as a StatusResult."""
        status = str(data.get("status", ""))
        state = STATES.get(status)
        if state is None:
            if status not in self._warned:
                self._warned.add(status)
                log.warning("openai: unknown video status %r; still polling", status[:40])
            return StatusResult(ProviderState.RUNNING, poll_after=hint)
        raw_progress = data.get("progress")
        progress = max(0, min(100, raw_progress)) if isinstance(raw_progress, int) else None
        if state is ProviderState.SUCCEEDED:
            return StatusResult(state, progress=100,
                                result_url=f"{self.base}/videos/{video_id}/content?variant=video")
        if state is ProviderState.FAILED:
            return StatusResult(state, error=self._failure(data, ctx, model))
        return StatusResult(state, progress=progress, poll_after=hint)

    def _failure(self, data: dict[str, Any], ctx: JobContext | None, model: str | None) -> ProviderError:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        code = str(error.get("code") or "") or None
        message = redact(str(error.get("message") or "the render failed")[:500], self._secrets(ctx))
        if code in POLICY_CODES:
            kind = ErrorKind.CONTENT_POLICY
        elif code in QUOTA_CODES:
            kind = ErrorKind.QUOTA_OR_BILLING
        elif code in RETIRED_CODES:
            kind = ErrorKind.MODEL_UNAVAILABLE
        elif code in TRANSIENT_CODES:
            kind = ErrorKind.TRANSIENT
        else:
            kind = classify_text(message)
        if kind is ErrorKind.MODEL_UNAVAILABLE:
            message = f"model {model or '(unknown)'} is not available at {self.base} ({message})"
        return ProviderError(kind, message, provider_code=code, model=model)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        # Our key goes only to our own base URL, never to a host a status answer might name.
        headers = self._headers(ctx) if result_url.startswith(self.base + "/") else None
        size = await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, headers=headers,
                                    what="openai download", expired_statuses=(404, 410))
        if self.settings.openai_delete_after_download:
            await self._delete(result_url, ctx)
        return size

    async def _delete(self, result_url: str, ctx: JobContext) -> None:
        """Remove the stored video at OpenAI once we have it; failures are logged, never raised."""
        video_id = result_url.rsplit("/videos/", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        try:
            async with transport_errors("openai delete"):
                response = await self.client.delete(f"{self.base}/videos/{video_id}", headers=self._headers(ctx))
        except ProviderError as error:
            log.warning("openai: could not delete video %s after download (%s)", video_id, error.kind.value)
            return
        if response.status_code >= 400:
            log.warning("openai: could not delete video %s after download (HTTP %s)", video_id,
                        response.status_code)

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        """The Videos API has no cancel (DELETE is for completed or failed videos only)."""
        return False

    async def verify_key(self, api_key: SecretStr) -> bool:
        """One cheap authenticated call: True on 200, False on 401/403, transient otherwise."""
        async with transport_errors("openai key check"):
            response = await self.client.get(f"{self.base}/models",
                                              headers={"Authorization": f"Bearer {api_key.get_secret_value()}"})
        if response.status_code == 200:
            return True
        if response.status_code in (401, 403):
            return False
        raise ProviderError(ErrorKind.TRANSIENT, f"openai key check: HTTP {response.status_code}",
                            retry_after=parse_retry_after(response.headers.get("Retry-After")))

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _epoch(value: Any) -> float | None:
    """A `created_at` in unix seconds (an integer in the spec; bools and other types are unusable)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def poll_hint(headers: httpx.Headers) -> float | None:
    """A server's own 'poll again after' hint (`openai-poll-after-ms` or Retry-After), in seconds."""
    millis = headers.get("openai-poll-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = -1.0
        if 0 <= value <= 3600:
            return value
    return parse_retry_after(headers.get("Retry-After"))
