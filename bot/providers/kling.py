"""Kling's official API (api-singapore.klingai.com): JWT auth, text2video / image2video.

Facts from PROVIDERS.md: HS256 JWT with iss/exp/nbf (signed with PyJWT), refreshed before expiry; `duration` is a
string; every answer carries an envelope `code` (0 = success) that is checked even on HTTP 200;
`external_task_id` is the job's request key (random, unique per install: a database reset or a
move to PostgreSQL can never attach a new job to an old task), so a job found in `submitting` after
a crash finds the task it already created (`find`: the query path accepts the external id).

Assumptions about the API (not certain from the documentation we have):
- Whether a second create with the same `external_task_id` is rejected is undocumented: `find` looks
  first. If a create is nevertheless refused as a duplicate (a 12xx code mentioning the external id),
  the existing task is looked up the same way. The fakes in tests/bot/providers/fakes.py do both.
- `cfg_scale` is documented as unsupported on v2.x official models: we send it only to models
  whose name starts with "kling-v1" (`cfg_applied`), and `notes` tells the user otherwise.
- Fields per endpoint: text2video takes `aspect_ratio`; image2video does not (the image sets the
  shape). `sound` ("on"/"off") exists on v2.6+ only: it is sent only for catalogue entries with
  audio. `mode` is the entry's (std/pro).
- Callbacks are unsigned, so `callback_url` carries a token derived from the secret key
  (`callback_token`), which bot/web.py checks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from bot.config import Settings
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
    configured_model_id,
)
from bot.providers.http import (
    classify_text,
    make_client,
    maybe_json,
    parse_retry_after,
    redact,
    status_error,
    stream_to_file,
    transport_errors,
)
from bot.requests import AnyRequest, KlingRequest

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 1800
REFRESH_MARGIN = 300  # renew when less than five minutes remain: a request in flight must not expire
KINDS = ("text2video", "image2video")
STATES = {
    "submitted": ProviderState.QUEUED,
    "processing": ProviderState.RUNNING,
    "succeed": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
}
DUPLICATE_WORDS = ("external_task_id", "external task id", "duplicate", "already exist")


def make_jwt(access_key: str, secret_key: str, now: float) -> str:
    """HS256 JWT as Kling documents it (iss = access key, exp, nbf five seconds back for clock skew)."""
    claims = {"iss": access_key, "exp": int(now) + TOKEN_LIFETIME, "nbf": int(now) - 5}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"typ": "JWT"})


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


def _code(value: Any) -> int | None:
    """The envelope code as an int (some gateways send it as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class KlingProvider(VideoProvider):
    """Kling through its official API."""

    name = "kling"

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None, base_url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.base = (base_url or settings.kling_api_base).rstrip("/")
        self._owns_client = client is None
        self.client = client or make_client(settings.provider_timeout_seconds, provider="kling")
        self.clock = clock
        self._token: tuple[str, float] | None = None
        self._warned: set[str] = set()

    def model_id(self, request: AnyRequest) -> str:
        return configured_model_id(self.settings, self.name, request)

    def cfg_applied(self, request: AnyRequest) -> bool:
        """The v2.x official models document cfg_scale as unsupported; v1 models take it."""
        return request.spec.cfg_scale and self.model_id(request).startswith("kling-v1")

    def notes(self, request: AnyRequest) -> list[str]:
        if (isinstance(request, KlingRequest) and request.cfg_scale not in (None, 0.5)
                and not self.cfg_applied(request)):
            return [f"Kling's {self.model_id(request)} ignores CFG scale; it was not applied."]
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
        self._token = (token, int(now) + TOKEN_LIFETIME)
        return token

    def _secrets(self) -> list[str | None]:
        values = [self.settings.kling_access_key, self.settings.kling_secret_key]
        return [v.get_secret_value() if v else None for v in values] + [self._token[0] if self._token else None]

    def _envelope(self, response: httpx.Response, what: str, model: str) -> dict[str, Any]:
        """Check the envelope `code` *and* the HTTP status (a 200 may carry an error code); return `data`."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        body = maybe_json(response)
        status = response.status_code
        if not isinstance(body, dict):
            if status >= 400:
                message = f"{what}: HTTP {status}"
                if status in (404, 410):  # no envelope: the endpoint itself is gone
                    message = f"model {model} is not available at Kling ({message})"
                raise status_error(status, message, model=model, retry_after=retry_after)
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: the provider sent an unreadable answer (HTTP {status})",
                                provider_code="bad_body")
        code = _code(body.get("code"))
        message = redact(str(body.get("message") or f"HTTP {status}")[:500], self._secrets())
        if code is None and "code" in body:
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: unexpected envelope code", provider_code="bad_body")
        if code:
            raise error_for_code(code, message, model=model, retry_after=retry_after)
        if status >= 400:
            raise status_error(status, message, model=model, retry_after=retry_after)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(ErrorKind.TRANSIENT, f"{what}: answer without data", provider_code="bad_body")
        return data

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def build_body(self, ctx: JobContext) -> tuple[str, dict[str, Any]]:
        """The endpoint kind and its JSON body (duration is a string here)."""
        request = ctx.request
        if not isinstance(request, KlingRequest):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "Kling's API only renders Kling requests")
        spec = request.spec
        kind = "image2video" if request.reference_image else "text2video"
        body: dict[str, Any] = {
            "model_name": self.model_id(request), "prompt": request.prompt, "mode": spec.mode,
            "duration": str(request.duration), "external_task_id": ctx.request_key or f"job-{ctx.job_id}",
        }
        if kind == "text2video":
            body["aspect_ratio"] = request.aspect_ratio  # image2video takes no aspect_ratio
        if spec.negative_prompt and request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if self.cfg_applied(request) and request.cfg_scale is not None:
            body["cfg_scale"] = float(request.cfg_scale)
        if spec.audio:
            body["sound"] = "on"
        if request.reference_image:
            body["image"] = base64.b64encode(Path(request.reference_image).read_bytes()).decode("ascii")
        if self.settings.public_base_url:
            token = callback_token(self.settings)
            body["callback_url"] = f"{self.settings.public_base_url.rstrip('/')}/webhooks/kling?token={token}"
        return kind, body

    async def submit(self, ctx: JobContext) -> str:
        kind, body = await asyncio.to_thread(self.build_body, ctx)  # reads the image file
        async with transport_errors("kling submit"):
            response = await self.client.post(f"{self.base}/v1/videos/{kind}", json=body, headers=self._headers())
        try:
            data = self._envelope(response, "kling submit", body["model_name"])
        except ProviderError as error:
            if _is_duplicate(error):
                log.info("kling: task for job %s already exists; looking it up", ctx.job_id)
                found = await self.find(body["external_task_id"], ctx)  # our earlier try got through
                if found:
                    return found[0]
            raise
        task_id = data.get("task_id")
        if not task_id:
            raise ProviderError(ErrorKind.TRANSIENT, "kling submit: no task id in the answer")
        return f"{kind}:{task_id}"

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        """The task created with `external_task_id = request_key`, by the query endpoint (either kind)."""
        kinds = ("image2video", "text2video") if ctx.request.reference_image else ("text2video", "image2video")
        for kind in kinds:
            async with transport_errors("kling lookup"):
                response = await self.client.get(f"{self.base}/v1/videos/{kind}/{request_key}",
                                                  headers=self._headers())
            try:
                data = self._envelope(response, "kling lookup", self.model_id(ctx.request))
            except ProviderError as error:
                if error.kind is ErrorKind.INVALID_REQUEST:  # 1201 "task not found": not under this kind
                    continue
                raise
            info = data.get("task_info") if isinstance(data.get("task_info"), dict) else {}
            external = info.get("external_task_id")
            if data.get("task_id") and external in (None, request_key):
                return [f"{kind}:{data['task_id']}"]
        return []

    @classmethod
    def callback_job_ids(cls, payload: dict[str, Any]) -> list[str]:
        """Kling's callback names the bare task id (top level or under `data`), not its kind: either may hold it."""
        inner = payload.get("data")
        task_id = payload.get("task_id") or (inner.get("task_id") if isinstance(inner, dict) else None)
        if not isinstance(task_id, str | int) or isinstance(task_id, bool) or not str(task_id):
            raise ValueError("no task id")
        return [f"{kind}:{task_id}" for kind in KINDS]

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        kind, sep, task_id = provider_job_id.partition(":")
        if not sep or kind not in KINDS:  # an id without its kind: the text endpoint is the default
            kind, task_id = "text2video", provider_job_id
        async with transport_errors("kling status"):
            response = await self.client.get(f"{self.base}/v1/videos/{kind}/{task_id}", headers=self._headers())
        model = self.model_id(ctx.request)
        data = self._envelope(response, "kling status", model)
        status = str(data.get("task_status", ""))
        state = STATES.get(status)
        if state is None:
            if status not in self._warned:
                self._warned.add(status)
                log.warning("kling: unknown task status %r; still polling", status[:40])
            return StatusResult(ProviderState.RUNNING)
        if state is ProviderState.SUCCEEDED:
            result = data.get("task_result") if isinstance(data.get("task_result"), dict) else {}
            videos = result.get("videos") if isinstance(result.get("videos"), list) else []
            url = videos[0].get("url") if videos and isinstance(videos[0], dict) else None
            if not isinstance(url, str) or not url:
                raise ProviderError(ErrorKind.TRANSIENT, "kling reported success without a video URL",
                                    provider_code="missing_output")
            return StatusResult(state, progress=100, result_url=url)
        if state is ProviderState.FAILED:
            message = redact(str(data.get("task_status_msg") or "the task failed")[:500], self._secrets())
            kind_ = classify_text(message)
            if kind_ is ErrorKind.MODEL_UNAVAILABLE:
                message = f"model {model} is not available at Kling ({message})"
            return StatusResult(state, error=ProviderError(kind_, message, model=model))
        return StatusResult(state)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        # Result URLs are CDN links: no JWT goes there.
        return await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, what="kling download")

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        return False  # the API has no cancel; the job is refunded on our side anyway

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _is_duplicate(error: ProviderError) -> bool:
    """A create refused because our external_task_id exists: an earlier submit got through."""
    code = int(error.provider_code) if (error.provider_code or "").isdigit() else 0
    return 1200 <= code <= 1299 and any(word in error.message.lower() for word in DUPLICATE_WORDS)
