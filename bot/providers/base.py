"""The provider interface and the error taxonomy every adapter maps onto.

Providers come and go (PROVIDERS.md), so nothing outside `bot/providers/` knows a provider's wire
format: the poller sees `submit`, `status`, `fetch`, `cancel` and the taxonomy below.
"""

from __future__ import annotations

import abc
import base64
import mimetypes
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import SecretStr

from bot import catalogue
from bot.config import Settings
from bot.requests import AnyRequest


class ErrorKind(StrEnum):
    """What went wrong, in terms of who must act and whether a retry can help."""

    INVALID_REQUEST = "invalid_request"
    CONTENT_POLICY = "content_policy"
    QUOTA_OR_BILLING = "quota_or_billing"
    MODEL_UNAVAILABLE = "model_unavailable"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    AUTH = "auth"

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT)


class ProviderError(Exception):
    """A provider failure already mapped to the taxonomy.

    `message` must never contain credentials; adapters build it from the provider's error text.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after: float | None = None,
        model: str | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.model = model
        self.provider_code = provider_code

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


class ProviderState(StrEnum):
    """A provider task's state, normalised across providers."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (ProviderState.SUCCEEDED, ProviderState.FAILED, ProviderState.CANCELED)


@dataclass(frozen=True)
class JobContext:
    """What an adapter may know about the job it works on."""

    job_id: int
    request: AnyRequest
    api_key: SecretStr | None = field(default=None, repr=False)
    # The job's submit key (unique per install, never the bare job id): sent with the create where the
    # API has a place for it, so `find` can recognise the task after a crash.
    request_key: str | None = None
    submitted_since: float | None = None  # when the submit intent was recorded: `find`'s time window


@dataclass(frozen=True)
class StatusResult:
    """One observation of a provider task."""

    state: ProviderState
    progress: int | None = None
    result_url: str | None = None
    error: ProviderError | None = None
    poll_after: float | None = None  # provider's own hint, in seconds


@dataclass(frozen=True)
class SweepResult:
    """One listing of the account's recent tasks: what each one is doing, and how far back it reached.

    Why: one list request answers for up to a page of renders, so while several are in flight a sweep
    every few seconds costs a fraction of looking at each, and finds every finished one just as soon
    (bot/sweep.py). `reaches_back_to` bounds what the absence of a task means: every task of the
    account created at or after it is in `states` (a task created earlier may simply be on a page
    that was not read).
    """

    states: dict[str, StatusResult]  # provider task id -> state (progress when the list carries it; no URL needed)
    reaches_back_to: float  # epoch seconds
    pages: int = 1  # list requests it took


class Listing(NamedTuple):
    """The tasks one walk down a provider's list endpoint read, newest first, back to `since`.

    `find` and `sweep` share the walk (ReplicateProvider._walk, OpenAIVideosProvider._walk).
    """

    items: list[tuple[float | None, dict[str, Any]]]  # (created_at, item) newest first, none older than `since`
    pages: int  # list requests made
    reaches_back_to: float  # every task created at or after it is in `items`


class VideoProvider(abc.ABC):
    """A place that turns a validated request into an MP4."""

    name: str = "provider"
    can_cancel: bool = False  # can this provider really stop a render (a cancel it confirms is refunded)?
    can_sweep: bool = False  # does it list the account's tasks with their states (see `sweep`)?

    def model_id(self, request: AnyRequest) -> str:
        """The provider's model id for this request (configuration, shown in errors)."""
        return "unknown"

    def notes(self, request: AnyRequest) -> list[str]:
        """Things the user should know about how this provider will treat the request."""
        return []

    def expected_seconds(self, request: AnyRequest) -> tuple[float, float]:
        """How long a task usually takes here; the poller's backoff prior."""
        return request.typical_wait()

    @classmethod
    def callback_job_ids(cls, payload: dict[str, Any]) -> list[str]:
        """The provider job ids a verified callback body may name (the adapter owns its id format).

        ValueError (a user-facing reason) when the body names none; providers without callbacks name none.
        """
        raise ValueError(f"{cls.name} sends no callbacks")

    @abc.abstractmethod
    async def submit(self, ctx: JobContext) -> str:
        """Start a task and return the provider's task id."""

    @abc.abstractmethod
    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        """Observe a task."""

    @abc.abstractmethod
    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        """Stream the finished video to `dest` and return its size in bytes."""

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        """Ask the provider to stop; return False when it cannot."""
        return False

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        """The provider's tasks an earlier submit of this job created (oldest first), for recovery.

        Called when a job is found in `submitting` (a crash or a lost answer between the provider
        accepting the create and the bot recording its id): a task found here is adopted instead of
        submitting (and paying) again. Raises ProviderError when the provider cannot be asked now.
        """
        return []

    async def sweep(self, since: float, *, max_pages: int) -> SweepResult:
        """The states of the operator account's tasks created since `since` (epoch seconds), newest first.

        Only for providers with `can_sweep`: the list endpoint read a page at a time until a task older
        than `since` (or the last page), at most `max_pages` pages. Tasks run with a user's own key are
        in that user's account, not here. Raises ProviderError when the provider cannot be asked now.
        """
        raise NotImplementedError(f"{self.name} cannot list its tasks")

    async def verify_key(self, api_key: SecretStr) -> bool:
        """Check a user's own key with one cheap call; providers without keys accept any."""
        return True

    async def aclose(self) -> None:
        """Release connections."""


def configured_model_id(settings: Settings, provider: str, request: AnyRequest) -> str:
    """The request's model id at `provider`, from its catalogue entry.

    The deprecated KLING_MODEL / SORA_MODEL / SORA_PRO_MODEL settings still replace the id of the
    family's default model (and of the model `resolution: high` picks) so old `.env` files keep
    working. A model without an id at this provider cannot run here: `model_unavailable`.
    """
    spec = request.spec
    books = catalogue.current()
    legacy = None
    if spec.family == "kling" and spec is books.default("kling"):
        legacy = settings.kling_model
    elif spec.family == "sora" and request.tier == "high" and spec is books.high_default("sora"):
        legacy = settings.sora_pro_model
    elif spec.family == "sora" and spec is books.default("sora"):
        legacy = settings.sora_model
    model_id = legacy or spec.provider_id(provider)
    if model_id is None:
        raise ProviderError(ErrorKind.MODEL_UNAVAILABLE, f"{spec.label} has no model id for provider {provider} "
                            "(provider_ids in the model catalogue)", model=spec.id, provider_code="no_provider_id")
    return model_id


def data_uri(path: str | Path) -> str:
    """A reference image as a data URI (providers must not get Discord CDN URLs: they expire)."""
    file = Path(path)
    kind = mimetypes.guess_type(file.name)[0] or "image/png"
    return f"data:{kind};base64," + base64.b64encode(file.read_bytes()).decode("ascii")
