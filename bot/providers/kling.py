"""Kling's official API (api-singapore.klingai.com): JWT auth, text2video / image2video.

Facts from PROVIDERS.md: HS256 JWT with iss/exp/nbf, refreshed before expiry; `duration` is a
string; every answer carries an envelope `code` (0 = success) that is checked even on HTTP 200;
`external_task_id` is our job id so a retried submit finds the task it already created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

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
from bot.requests import AnyRequest, KlingRequest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "kling-v2-master"
TOKEN_LIFETIME = 1800
REFRESH_MARGIN = 300
STATES = {
    "submitted": ProviderState.QUEUED,
    "processing": ProviderState.RUNNING,
    "succeed": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(access_key: str, secret_key: str, now: float) -> str:
    """HS256 JWT as Kling documents it (standard library only)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"iss": access_key, "exp": int(now) + TOKEN_LIFETIME, "nbf": int(now) - 5},
                             separators=(",", ":")).encode())
    signature = hmac.new(secret_key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


def callback_token(settings: Settings) -> str:
    """Kling's callbacks are unsigned: the callback URL carries a token only we can derive."""
    secret = settings.kling_secret_key.get_secret_value() if settings.kling_secret_key else ""
    return hmac.new(secret.encode(), b"kling-callback", hashlib.sha256).hexdigest()[:32]


def error_for_code(code: int, message: str, *, model: str, retry_after: float | None = None) -> ProviderError:
    """Kling's envelope codes mapped onto the taxonomy."""
    if 1000 <= code <= 1004 or code == 1103:
        kind = ErrorKind.AUTH
    elif 1100 <= code <= 1102:
        kind = ErrorKind.QUOTA_OR_BILLING
    elif code == 1203:
        return ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"model {model} is not available at Kling ({message})",
                             model=model, provider_code=str(code))
    elif 1200 <= code <= 1299:
        kind = ErrorKind.INVALID_REQUEST
    elif code == 1301:
        kind = ErrorKind.CONTENT_POLICY
    elif 1302 <= code <= 1304:
        kind = ErrorKind.RATE_LIMITED
    else:  # 5000-5002 are server side; an unknown code is treated the same way (retry, then refund)
        kind = ErrorKind.TRANSIENT
    return ProviderError(kind, message, model=model, retry_after=retry_after, provider_code=str(code))


class KlingProvider(VideoProvider):
    name = "kling"

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.base = settings.kling_api_base.rstrip("/")
        self.client = client or make_client(settings.provider_timeout_seconds)
        self.clock = clock
        self._token: tuple[str, float] | None = None

    @property
    def model(self) -> str:
        return self.settings.kling_model or DEFAULT_MODEL

    def model_id(self, request: AnyRequest) -> str:
        return self.model

    def cfg_applied(self, request: AnyRequest) -> bool:
        """The v2.x official models document cfg_scale as unsupported; v1 models take it."""
        return self.model.startswith("kling-v1")

    def notes(self, request: AnyRequest) -> list[str]:
        if isinstance(request, KlingRequest) and not self.cfg_applied(request) and request.cfg_scale != 0.5:
            return [f"The configured Kling model ({self.model}) ignores CFG scale; it was not applied."]
        return []

    def token(self) -> str:
        """A cached JWT, renewed when less than five minutes remain."""
        now = self.clock()
        if self._token is not None and self._token[1] - now > REFRESH_MARGIN:
            return self._token[0]
        access, secret = self.settings.kling_access_key, self.settings.kling_secret_key
        if access is None or secret is None:
            raise ProviderError(ErrorKind.AUTH, "KLING_ACCESS_KEY and KLING_SECRET_KEY must be set")
        token = make_jwt(access.get_secret_value(), secret.get_secret_value(), now)
        self._token = (token, now + TOKEN_LIFETIME)
        return token

    def _secrets(self) -> list[str | None]:
        values = [self.settings.kling_access_key, self.settings.kling_secret_key]
        return [v.get_secret_value() if v else None for v in values] + [self._token[0] if self._token else None]

    def _envelope(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """Check HTTP status *and* the envelope code; return `data`."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.status_code >= 400:
                raise status_error(response.status_code, f"{what}: HTTP {response.status_code}", model=self.model,
                                   retry_after=retry_after)
            json_body(response, what)  # raises the unreadable-answer error
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: unexpected answer")
        code = body.get("code")
        message = redact(str(body.get("message") or f"HTTP {response.status_code}"), self._secrets())
        if isinstance(code, int) and code != 0:
            raise error_for_code(code, message, model=self.model, retry_after=retry_after)
        if response.status_code >= 400:
            raise status_error(response.status_code, message, model=self.model, retry_after=retry_after)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: answer without data")
        return data

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"}

    def build_body(self, ctx: JobContext) -> tuple[str, dict[str, Any]]:
        request = ctx.request
        if not isinstance(request, KlingRequest):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "Kling's API only renders Kling requests")
        kind = "image2video" if request.reference_image else "text2video"
        body: dict[str, Any] = {
            "model_name": self.model, "prompt": request.prompt, "mode": "std",
            "aspect_ratio": request.aspect_ratio, "duration": str(request.duration),
            "external_task_id": str(ctx.job_id),
        }
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if self.cfg_applied(request):
            body["cfg_scale"] = request.cfg_scale
        if request.reference_image:
            body["image"] = base64.b64encode(Path(request.reference_image).read_bytes()).decode("ascii")
        if self.settings.public_base_url:
            token = callback_token(self.settings)
            body["callback_url"] = f"{self.settings.public_base_url.rstrip('/')}/webhooks/kling?token={token}"
        return kind, body

    async def submit(self, ctx: JobContext) -> str:
        kind, body = self.build_body(ctx)
        async with transport_errors("kling submit"):
            response = await self.client.post(f"{self.base}/v1/videos/{kind}", json=body, headers=self._headers())
        try:
            data = self._envelope(response, "kling submit")
        except ProviderError as error:
            if error.provider_code == "1201" and "external_task_id" in error.message.lower():
                return await self._existing(kind, ctx.job_id)  # our earlier try got through
            raise
        task_id = data.get("task_id")
        if not task_id:
            raise ProviderError(ErrorKind.TRANSIENT, "kling submit: no task id in the answer")
        return f"{kind}:{task_id}"

    async def _existing(self, kind: str, job_id: int) -> str:
        """Find the task a previous submit created (assumption: the query path accepts external_task_id)."""
        async with transport_errors("kling lookup"):
            response = await self.client.get(f"{self.base}/v1/videos/{kind}/{job_id}", headers=self._headers())
        data = self._envelope(response, "kling lookup")
        return f"{kind}:{data['task_id']}"

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        kind, _, task_id = provider_job_id.partition(":")
        async with transport_errors("kling status"):
            response = await self.client.get(f"{self.base}/v1/videos/{kind}/{task_id}", headers=self._headers())
        data = self._envelope(response, "kling status")
        state = STATES.get(str(data.get("task_status")))
        if state is None:
            return StatusResult(ProviderState.RUNNING)
        if state is ProviderState.SUCCEEDED:
            videos = (data.get("task_result") or {}).get("videos") or []
            url = videos[0].get("url") if videos and isinstance(videos[0], dict) else None
            if not url:
                raise ProviderError(ErrorKind.TRANSIENT, "kling reported success without a video URL")
            return StatusResult(state, progress=100, result_url=url)
        if state is ProviderState.FAILED:
            message = redact(str(data.get("task_status_msg") or "the task failed"), self._secrets())
            return StatusResult(state, error=ProviderError(classify_text(message), message, model=self.model))
        return StatusResult(state)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        return await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, what="kling download")

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        return False  # the API has no cancel; the job is refunded on our side anyway

    async def aclose(self) -> None:
        await self.client.aclose()
