"""OpenAI Videos API (Sora). The public service shut down on 2026-09-24; compatible endpoints may
remain behind OPENAI_BASE_URL, so a 404/410 reads as `model_unavailable`, clearly.

Facts from PROVIDERS.md and specs/openai-videos-openapi.json: `seconds` is a string, `size` is
"WxH", `input_reference` is an image file of exactly that size (multipart), the video bytes are
at `/videos/{id}/content`. A user's own key is used for that job's requests only.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
)
from bot.providers.http import (
    classify_text,
    json_body,
    make_client,
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
POLICY_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}


class OpenAIVideosProvider(VideoProvider):
    name = "openai"

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.base = settings.openai_base_url.rstrip("/")
        self.client = client or make_client(settings.provider_timeout_seconds)

    def model_id(self, request: AnyRequest) -> str:
        if isinstance(request, SoraRequest) and request.is_pro:
            return self.settings.sora_pro_model or "sora-2-pro"
        return self.settings.sora_model or "sora-2"

    def _key(self, ctx: JobContext | None) -> str:
        if ctx is not None and ctx.api_key is not None:
            return ctx.api_key.get_secret_value()
        if self.settings.openai_api_key is None:
            raise ProviderError(ErrorKind.AUTH, "OPENAI_API_KEY is not set")
        return self.settings.openai_api_key.get_secret_value()

    def _headers(self, ctx: JobContext | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key(ctx)}"}

    def _secrets(self, ctx: JobContext | None) -> list[str | None]:
        operator = self.settings.openai_api_key
        return [operator.get_secret_value() if operator else None,
                ctx.api_key.get_secret_value() if ctx and ctx.api_key else None]

    def _error(self, response: httpx.Response, ctx: JobContext | None, model: str | None) -> ProviderError:
        error: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
        except ValueError:
            pass
        message = redact(str(error.get("message") or f"HTTP {response.status_code}"), self._secrets(ctx))
        code = str(error.get("code") or "") or None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 429 and code == "insufficient_quota":
            return ProviderError(ErrorKind.QUOTA_OR_BILLING, message, provider_code=code)
        if code in POLICY_CODES or (response.status_code == 400 and classify_text(message) is ErrorKind.CONTENT_POLICY):
            return ProviderError(ErrorKind.CONTENT_POLICY, message, provider_code=code)
        if code == "model_not_found" or (response.status_code in (404, 410) and model):
            return ProviderError(ErrorKind.MODEL_UNAVAILABLE,
                                 f"model {model} is not available at {self.base} ({message})", model=model,
                                 provider_code=code)
        return status_error(response.status_code, message, model=model, retry_after=retry_after, code=code)

    def _reference(self, path: str, size: tuple[int, int]) -> bytes:
        """The first frame as PNG bytes of exactly the output size (the API rejects other sizes)."""
        with Image.open(path) as image:
            fitted = image.convert("RGB") if image.size == size else ImageOps.fit(image.convert("RGB"), size)
        buffer = io.BytesIO()
        fitted.save(buffer, format="PNG")
        return buffer.getvalue()

    async def submit(self, ctx: JobContext) -> str:
        request = ctx.request
        model = self.model_id(request)
        fields = {"prompt": request.prompt, "model": model, "seconds": str(request.seconds),
                  "size": request.size_text()}
        async with transport_errors("openai submit"):
            if request.reference_image:
                image = self._reference(request.reference_image, request.size)
                response = await self.client.post(
                    f"{self.base}/videos", data=fields, headers=self._headers(ctx),
                    files={"input_reference": ("reference.png", image, "image/png")},
                )
            else:
                response = await self.client.post(f"{self.base}/videos", json=fields, headers=self._headers(ctx))
        if response.status_code >= 400:
            raise self._error(response, ctx, model)
        data = json_body(response, "openai submit")
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderError(ErrorKind.TRANSIENT, "openai submit: no video id in the answer")
        return str(data["id"])

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        async with transport_errors("openai status"):
            response = await self.client.get(f"{self.base}/videos/{provider_job_id}", headers=self._headers(ctx))
        if response.status_code >= 400:
            raise self._error(response, ctx, self.model_id(ctx.request))
        data = json_body(response, "openai status")
        hint = _poll_hint(response.headers)
        state = STATES.get(str(data.get("status"))) if isinstance(data, dict) else None
        if state is None:
            return StatusResult(ProviderState.RUNNING, poll_after=hint)
        progress = data.get("progress") if isinstance(data.get("progress"), int) else None
        if state is ProviderState.SUCCEEDED:
            return StatusResult(state, progress=100,
                                result_url=f"{self.base}/videos/{provider_job_id}/content?variant=video")
        if state is ProviderState.FAILED:
            error = data.get("error") or {}
            code = str(error.get("code") or "") or None
            message = redact(str(error.get("message") or "the render failed"), self._secrets(ctx))
            kind = ErrorKind.CONTENT_POLICY if code in POLICY_CODES else classify_text(message)
            return StatusResult(state, error=ProviderError(kind, message, provider_code=code,
                                                           model=self.model_id(ctx.request)))
        return StatusResult(state, progress=progress, poll_after=hint)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        size = await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, headers=self._headers(ctx),
                                    what="openai download")
        if self.settings.openai_delete_after_download:
            video_id = result_url.rsplit("/videos/", 1)[-1].split("/", 1)[0]
            try:
                async with transport_errors("openai delete"):
                    await self.client.delete(f"{self.base}/videos/{video_id}", headers=self._headers(ctx))
            except ProviderError as error:
                log.info("openai: could not delete video after download (%s)", error.kind.value)
        return size

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        async with transport_errors("openai cancel"):
            response = await self.client.delete(f"{self.base}/videos/{provider_job_id}", headers=self._headers(ctx))
        return response.status_code < 400

    async def verify_key(self, api_key: SecretStr) -> bool:
        async with transport_errors("openai key check"):
            response = await self.client.get(f"{self.base}/models",
                                             headers={"Authorization": f"Bearer {api_key.get_secret_value()}"})
        if response.status_code == 200:
            return True
        if response.status_code in (401, 403):
            return False
        raise ProviderError(ErrorKind.TRANSIENT, f"openai key check: HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self.client.aclose()


def _poll_hint(headers: httpx.Headers) -> float | None:
    """A server's own 'poll again after' hint, if it gives one."""
    millis = headers.get("openai-poll-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            return None
    return parse_retry_after(headers.get("Retry-After"))
