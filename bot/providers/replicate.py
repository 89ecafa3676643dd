"""Replicate: hosts both families (the catalogue's `replicate` ids: kwaivgi/kling-*, openai/sora-2*).

Facts from PROVIDERS.md: model predictions endpoint, integer durations, data-URI images, outputs
deleted after an hour (the poller downloads at once), 429 with Retry-After.

Mapping decisions:
- A 404 on create means the model id is unknown or retired: `model_unavailable` naming it. A 404 on
  a prediction (status/cancel) means the task itself is gone: `invalid_request` (refund), not a
  model problem.
- `succeeded` without an output URL raises a transient error (`missing_output`): the poller polls
  again a few times (covers a provider writing the output just after the status) and then
  refunds.
- A failed prediction's free-text error is classified: policy words -> `content_policy`,
  "model … not found/deprecated/retired/shut down" -> `model_unavailable`, timeouts/out of memory
  -> `transient`, anything else `invalid_request`.
- The list endpoint (`find`, `sweep`) is walked newest first with one loop (`_walk`). Its `next`
  link is followed only on our own base URL: the token goes nowhere else.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
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
    data_uri,
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
from bot.requests import AnyRequest, KlingRequest, SoraRequest

log = logging.getLogger(__name__)

STATES = {
    "starting": ProviderState.QUEUED,
    "processing": ProviderState.RUNNING,
    "succeeded": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    "canceled": ProviderState.CANCELED,
    "aborted": ProviderState.CANCELED,
}
_PERCENT = re.compile(r"(\d{1,3})%")
FIND_MARGIN_SECONDS = 300.0  # clock skew between us and the provider when matching by time
FIND_MAX_PAGES = 10  # 1000 predictions back: far more than one submit window holds


class ReplicateProvider(VideoProvider):
    """Both model families through Replicate's model-predictions API."""

    name = "replicate"
    can_cancel = True
    can_sweep = True

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None,
                 base_url: str | None = None) -> None:
        self.settings = settings
        self.base = (base_url or settings.replicate_api_base).rstrip("/")
        self._owns_client = client is None  # an injected client belongs to the caller
        self.client = client or make_client(settings.provider_timeout_seconds, provider="replicate")
        self._warned: set[str] = set()
        self._warned_next = False

    def model_id(self, request: AnyRequest) -> str:
        return configured_model_id(self.settings, self.name, request)

    @classmethod
    def callback_job_ids(cls, payload: dict[str, Any]) -> list[str]:
        """A prediction callback is the prediction itself: its `id` is the provider job id."""
        prediction_id = payload.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ValueError("no prediction id")
        return [prediction_id]

    def _headers(self) -> dict[str, str]:
        token = self.settings.replicate_api_token
        if token is None:
            raise ProviderError(ErrorKind.AUTH, "REPLICATE_API_TOKEN is not set")
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def _secrets(self, ctx: JobContext | None = None) -> list[str | None]:
        token = self.settings.replicate_api_token
        return [token.get_secret_value() if token else None,
                ctx.api_key.get_secret_value() if ctx and ctx.api_key else None]

    def build_input(self, ctx: JobContext) -> dict[str, Any]:
        """Our request in the model's own input names and types (durations are integers here).

        Only fields the catalogue entry says the model takes are sent: `cfg_scale` and
        `negative_prompt` where the entry has them, `generate_audio` for Kling models with audio,
        `resolution` for Sora models with a high tier. With a first frame the Kling schemas
        ignore `aspect_ratio` (the frame sets the shape; the bot fits it to the output size), so
        it is left out rather than sent to be ignored.
        """
        request = ctx.request
        spec = request.spec
        if isinstance(request, KlingRequest):
            data: dict[str, Any] = {"prompt": request.prompt, "duration": int(request.duration)}
            if request.reference_image:
                data["start_image"] = data_uri(request.reference_image)
            else:
                data["aspect_ratio"] = request.aspect_ratio
            if spec.cfg_scale and request.cfg_scale is not None:
                data["cfg_scale"] = float(request.cfg_scale)
            if spec.negative_prompt and request.negative_prompt:
                data["negative_prompt"] = request.negative_prompt
            if spec.audio:
                data["generate_audio"] = True
            return data
        assert isinstance(request, SoraRequest)
        data = {"prompt": request.prompt, "seconds": int(request.duration), "aspect_ratio": request.orientation}
        if spec.high_sizes:
            data["resolution"] = request.resolution
        if request.reference_image:
            data["input_reference"] = data_uri(request.reference_image)
        if ctx.api_key is not None:
            data["openai_api_key"] = ctx.api_key.get_secret_value()
        return data

    def _error(self, response: httpx.Response, ctx: JobContext | None, *, model: str | None) -> ProviderError:
        """Replicate's error answer (`{"detail": …}` or problem+json) mapped onto the taxonomy."""
        body = maybe_json(response)
        detail = ""
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or body.get("error") or "")
        message = redact(detail[:500] or f"HTTP {response.status_code}", self._secrets(ctx))
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 404 and model:
            return ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"model {model} is not available on Replicate",
                                 model=model, provider_code="model_not_found")
        if status == 404:
            return ProviderError(ErrorKind.INVALID_REQUEST, "Replicate no longer knows this prediction",
                                 provider_code="prediction_not_found")
        if status in (400, 422):
            kind = classify_text(message)
            if kind is ErrorKind.TRANSIENT:  # a 4xx is about the request, whatever its words say
                kind = ErrorKind.INVALID_REQUEST
            return ProviderError(kind, message, model=model)
        return status_error(status, message, model=model, retry_after=retry_after)

    async def submit(self, ctx: JobContext) -> str:
        model = self.model_id(ctx.request)
        owner, _, name = model.partition("/")
        if not owner or not name or "/" in name:
            raise ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"model {model} is not a Replicate model id "
                                "(expected owner/name)", model=model, provider_code="bad_model_id")
        body: dict[str, Any] = {"input": self.build_input(ctx)}
        if (webhook := self._webhook(ctx)) is not None:
            body["webhook"] = webhook  # carries the request key: `find` recognises the prediction by it
            body["webhook_events_filter"] = ["completed"]
        async with transport_errors("replicate submit"):
            response = await self.client.post(f"{self.base}/v1/models/{owner}/{name}/predictions", json=body,
                                              headers=self._headers())
        if response.status_code >= 400:
            raise self._error(response, ctx, model=model)
        data = json_object(response, "replicate submit")
        if not data.get("id"):
            raise ProviderError(ErrorKind.TRANSIENT, "replicate submit: no prediction id in the answer")
        return str(data["id"])

    def _webhook(self, ctx: JobContext) -> str | None:
        if not self.settings.public_base_url:
            return None
        url = f"{self.settings.public_base_url.rstrip('/')}/webhooks/replicate"
        return f"{url}?key={quote(ctx.request_key)}" if ctx.request_key else url

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        """Predictions an earlier submit of this job created: list the account's predictions newest first
        back to the submit intent (minus a margin for clock skew), keep those of this model whose webhook
        carries our key or, without one, whose input is exactly what we send. Oldest first."""
        since = (ctx.submitted_since or 0.0) - FIND_MARGIN_SECONDS
        model = self.model_id(ctx.request)
        expected = {k: v for k, v in self.build_input(ctx).items() if k != "openai_api_key"}
        marker = self._webhook(ctx) if ctx.request_key == request_key else None
        listing = await self._walk(since, max_pages=FIND_MAX_PAGES, ctx=ctx)
        found: list[tuple[float, str]] = []
        for created, item in listing.items:
            if item.get("model") not in (None, model):
                continue
            full = item if "input" in item else await self._get_json(
                f"{self.base}/v1/predictions/{quote(str(item['id']), safe='')}", ctx, "replicate lookup")
            given = full.get("input") if isinstance(full.get("input"), dict) else {}
            given = {k: v for k, v in given.items() if k != "openai_api_key"}
            webhook = full.get("webhook")
            keyed = isinstance(webhook, str) and "?key=" in webhook  # a marker decides alone
            if (webhook == marker) if keyed else given == expected:
                found.append((created or 0.0, str(item["id"])))
        return [pid for _, pid in sorted(found)]

    async def sweep(self, since: float, *, max_pages: int) -> SweepResult:
        """Every prediction of the operator's account created since `since`, with its state.

        One list request answers for a page of 100, so the poller asks this instead of polling each
        render. States map as in `status` (an unknown one is `running`); progress comes from `logs`
        when the list carries them. A finished prediction is a cue to look at it (`status`): a success
        has no URL here, and a failure carries its reason only when the list item has an `error` (list
        items are not documented to). Predictions run with a user's OpenAI key are still this account's,
        so they are listed.
        """
        listing = await self._walk(since, max_pages=max_pages, ctx=None)
        states = {str(item["id"]): self._observe(item, None, model=_model_of(item), need_output=False)
                  for _, item in listing.items}
        return SweepResult(states=states, reaches_back_to=listing.reaches_back_to, pages=listing.pages)

    async def _walk(self, since: float, *, max_pages: int, ctx: JobContext | None) -> Listing:
        """Read `GET /v1/predictions` newest first, following `next`, until a prediction created before
        `since`, the last page, or `max_pages` pages.

        `reaches_back_to` is `since` when the walk got there (an older item, or no `next`); otherwise the
        oldest created_at read (or the walk's start when none was dated): older predictions were not
        seen. Items without a parsable created_at are kept (they count as seen).
        """
        started = time.time()
        items: list[tuple[float | None, dict[str, Any]]] = []
        oldest: float | None = None
        pages = 0
        url: str | None = f"{self.base}/v1/predictions"
        while url is not None and pages < max_pages:
            page = await self._get_json(url, ctx, "replicate list")
            pages += 1
            results = page.get("results")
            reached = False
            for item in results if isinstance(results, list) else []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                created = _timestamp(item.get("created_at"))
                if created is not None and created < since:
                    reached = True
                    break
                if created is not None:
                    oldest = created if oldest is None else min(oldest, created)
                items.append((created, item))
            next_url = page.get("next")
            if reached or not isinstance(next_url, str) or not next_url:
                return Listing(items, pages, since)
            if not next_url.startswith(self.base + "/"):  # the token goes to our own base URL only
                if not self._warned_next:
                    self._warned_next = True
                    log.warning("replicate: the list's next link leaves %s; not followed", self.base)
                break
            url = next_url
        return Listing(items, pages, oldest if oldest is not None else max(since, started))

    async def _get_json(self, url: str, ctx: JobContext | None, what: str) -> dict[str, Any]:
        async with transport_errors(what):
            response = await self.client.get(url, headers=self._headers())
        if response.status_code >= 400:
            raise self._error(response, ctx, model=None)
        return json_object(response, what)

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        async with transport_errors("replicate status"):
            response = await self.client.get(f"{self.base}/v1/predictions/{provider_job_id}", headers=self._headers())
        if response.status_code >= 400:
            raise self._error(response, ctx, model=None)
        data = json_object(response, "replicate status")
        return self._observe(data, ctx, model=self.model_id(ctx.request), need_output=True)

    def _observe(self, data: dict[str, Any], ctx: JobContext | None, *, model: str | None,
                 need_output: bool) -> StatusResult:
        """One prediction object (from a poll or a list page) as a StatusResult.

        `need_output`: a poll's success must carry the video URL (the poller downloads it next); a list's
        need not (the poller polls that prediction before downloading).
        """
        status = str(data.get("status", ""))
        state = STATES.get(status)
        if state is None:
            if status not in self._warned:  # once per value: a new status must not flood the log
                self._warned.add(status)
                log.warning("replicate: unknown prediction status %r; still polling", status[:40])
            return StatusResult(ProviderState.RUNNING)
        if state is ProviderState.SUCCEEDED:
            output = data.get("output")
            url = output[0] if isinstance(output, list) and output else output
            if not isinstance(url, str) or not url:
                if not need_output:
                    return StatusResult(state, progress=100)
                raise ProviderError(ErrorKind.TRANSIENT, "replicate reported success without a video URL",
                                    provider_code="missing_output")
            return StatusResult(state, progress=100, result_url=url)
        if state is ProviderState.FAILED:
            if not need_output and "error" not in data:  # a list item without the reason: `status` has it
                return StatusResult(state)
            return StatusResult(state, error=self._failure(data, ctx, model))
        progress = _progress_from_logs(data.get("logs")) if state is ProviderState.RUNNING else None
        return StatusResult(state, progress=progress)

    def _failure(self, data: dict[str, Any], ctx: JobContext | None, model: str | None) -> ProviderError:
        message = redact(str(data.get("error") or "the prediction failed")[:500], self._secrets(ctx))
        kind = classify_text(message)
        if kind is ErrorKind.MODEL_UNAVAILABLE:
            message = f"model {model or '(unknown)'} is not available on Replicate ({message})"
        return ProviderError(kind, message, model=model)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        # Output URLs are public delivery links: no credentials go to that host.
        return await stream_to_file(self.client, result_url, dest, max_bytes=max_bytes, what="replicate download")

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        async with transport_errors("replicate cancel"):
            response = await self.client.post(f"{self.base}/v1/predictions/{provider_job_id}/cancel",
                                              headers=self._headers())
        return response.status_code < 400

    async def verify_key(self, api_key: SecretStr) -> bool:
        """Replicate passes a user's OpenAI key through to OpenAI; there is nothing to call here."""
        return True

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _model_of(item: dict[str, Any]) -> str | None:
    """The `owner/name` a list item says it ran (failed items name it in their error)."""
    model = item.get("model")
    return model if isinstance(model, str) and model else None


def _timestamp(value: Any) -> float | None:
    """Replicate's ISO 8601 times (`2026-11-27T17:00:00.123Z`) as unix seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()  # a zoneless time is UTC, not ours


def _progress_from_logs(logs: Any) -> int | None:
    """Replicate logs often end in a percentage ("... 45%|"); use it when present."""
    if not isinstance(logs, str):
        return None
    found = _PERCENT.findall(logs[-500:])
    return min(99, int(found[-1])) if found else None
