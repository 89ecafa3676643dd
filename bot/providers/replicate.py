"""Replicate: hosts both families (kwaivgi/kling-v2.0, openai/sora-2, openai/sora-2-pro).

Facts from PROVIDERS.md: model predictions endpoint, integer durations, data-URI images, outputs
deleted after an hour (the poller downloads at once), 429 with Retry-After.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bot.config import Settings
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
    data_uri,
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
from bot.requests import AnyRequest, KlingRequest, SoraRequest

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"kling": "kwaivgi/kling-v2.0", "sora": "openai/sora-2", "sora_pro": "openai/sora-2-pro"}
STATES = {
    "starting": ProviderState.QUEUED,
    "processing": ProviderState.RUNNING,
    "succeeded": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    "canceled": ProviderState.CANCELED,
    "aborted": ProviderState.CANCELED,
}


class ReplicateProvider(VideoProvider):
    name = "replicate"

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.base = settings.replicate_api_base.rstrip("/")
        self.client = client or make_client(settings.provider_timeout_seconds)
        self._warned: set[str] = set()

    def model_id(self, request: AnyRequest) -> str:
        if isinstance(request, KlingRequest):
            return self.settings.kling_model or DEFAULT_MODELS["kling"]
        if request.is_pro:
            return self.settings.sora_pro_model or DEFAULT_MODELS["sora_pro"]
        return self.settings.sora_model or DEFAULT_MODELS["sora"]

    def _headers(self) -> dict[str, str]:
        token = self.settings.replicate_api_token
        if token is None:
            raise ProviderError(ErrorKind.AUTH, "REPLICATE_API_TOKEN is not set")
        return {"Authorization": f"Bearer {token.get_secret_value()}", "Content-Type": "application/json"}

    def _secrets(self, ctx: JobContext | None = None) -> list[str | None]:
        token = self.settings.replicate_api_token
        return [token.get_secret_value() if token else None,
                ctx.api_key.get_secret_value() if ctx and ctx.api_key else None]

    def build_input(self, ctx: JobContext) -> dict[str, Any]:
        """Our request in the model's own input names and types."""
        request = ctx.request
        if isinstance(request, KlingRequest):
            data: dict[str, Any] = {"prompt": request.prompt, "duration": request.duration,
                                    "aspect_ratio": request.aspect_ratio, "cfg_scale": request.cfg_scale}
            if request.negative_prompt:
                data["negative_prompt"] = request.negative_prompt
            if request.reference_image:
                data["start_image"] = data_uri(request.reference_image)
            return data
        assert isinstance(request, SoraRequest)
        data = {"prompt": request.prompt, "seconds": request.duration, "aspect_ratio": request.orientation}
        if request.is_pro:
            data["resolution"] = "high"
        if request.reference_image:
            data["input_reference"] = data_uri(request.reference_image)
        if ctx.api_key is not None:
            data["openai_api_key"] = ctx.api_key.get_secret_value()
        return data

    def _error(self, response: httpx.Response, ctx: JobContext | None, *, model: str | None) -> ProviderError:
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = ""
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or body.get("error") or "")
        message = redact(detail or f"HTTP {response.status_code}", self._secrets(ctx))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 404 and model:
            return ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"model {model} is not available on Replicate",
                                 model=model)
        if response.status_code == 422:
            kind = classify_text(message)
            return ProviderError(kind, message, model=model)
        return status_error(response.status_code, message, model=model, retry_after=retry_after)

    async def submit(self, ctx: JobContext) -> str:
        model = self.model_id(ctx.request)
        body: dict[str, Any] = {"input": self.build_input(ctx)}
        if self.settings.public_base_url:
            body["webhook"] = f"{self.settings.public_base_url.rstrip('/')}/webhooks/replicate"
            body["webhook_events_filter"] = ["completed"]
        async with transport_errors("replicate submit"):
            response = await self.client.post(f"{self.base}/v1/models/{model}/predictions", json=body,
                                              headers=self._headers())
        if response.status_code >= 400:
            raise self._error(response, ctx, model=model)
        data = json_body(response, "replicate submit")
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderError(ErrorKind.TRANSIENT, "replicate submit: no prediction id in the answer")
        return str(data["id"])

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        async with transport_errors("replicate status"):
            response = await self.client.get(f"{self.base}/v1/predictions/{provider_job_id}", headers=self._headers())
        if response.status_code >= 400:
            raise self._error(response, ctx, model=None)
        data = json_body(response, "replicate status")
        status = str(data.get("status", "")) if isinstance(data, dict) else ""
        state = STATES.get(status)
        if state is None:
            if status not in self._warned:
                self._warned.add(status)
                log.warning("replicate: unknown prediction status %r; still polling", status[:40])
            return StatusResult(ProviderState.RUNNING)
        if state is ProviderState.SUCCEEDED:
            output = data.get("output")
            url = output[0] if isinstance(output, list) and output else output
            if not isinstance(url, str) or not url:
                raise ProviderError(ErrorKind.TRANSIENT, "replicate reported success without a video URL")
            return StatusResult(state, progress=100, result_url=url)
        if state is ProviderState.FAILED:
            message = redact(str(data.get("error") or "the prediction failed"), self._secrets(ctx))
            kind = classify_text(message)
            model = self.model_id(ctx.request)
            return StatusResult(state, error=ProviderError(kind, message, model=model))
        return StatusResult(state, progress=_progress_from_logs(data.get("logs")))

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        # Output URLs are public delivery links: no credentials go to that host.
        return await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, what="replicate download")

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        async with transport_errors("replicate cancel"):
            response = await self.client.post(f"{self.base}/v1/predictions/{provider_job_id}/cancel",
                                              headers=self._headers())
        return response.status_code < 400

    async def verify_key(self, api_key: SecretStr) -> bool:
        """The user's OpenAI key is passed through to OpenAI by Replicate; only its shape can be checked here."""
        return api_key.get_secret_value().startswith("sk-")

    async def aclose(self) -> None:
        await self.client.aclose()


def _progress_from_logs(logs: Any) -> int | None:
    """Replicate logs often end in a percentage ("... 45%|"); use it when present."""
    if not isinstance(logs, str):
        return None
    import re

    found = re.findall(r"(\d{1,3})%", logs[-500:])
    return min(99, int(found[-1])) if found else None
