"""The simulated provider: real MP4s rendered locally, on the models' own timetable.

It lets the bot run with no paid account and lets tests drive every failure. Task state lives in
small JSON files in the work dir, so a bot restart picks up where it left off.

Failure keywords in the prompt (or `SIMULATED_FAIL=<kind>` for every job):
- `[fail:content_policy]` fails at status time, after the usual wait (like real moderation);
- `[fail:invalid_request]`, `[fail:quota_or_billing]`, `[fail:model_unavailable]`, `[fail:auth]`,
  `[fail:rate_limited]`, `[fail:transient]` fail at submit;
- `[fail-once:<kind>]` fails only the first submit of a job (to exercise retries);
- `[fail:expired]` succeeds but the output "expires" before download (fetch fails).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from bot.config import Settings
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
)
from bot.render import render_video
from bot.requests import AnyRequest, SoraRequest, request_from_json

FAIL = re.compile(r"\[fail(-once)?:([a-z_]+)\]")
CHUNK = 256 * 1024


class SimulatedProvider(VideoProvider):
    """Renders with PyAV after a wait drawn from the model's typical range × SIMULATED_SPEED."""

    name = "simulated"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 work_dir: Path | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.work_dir = work_dir or settings.video_dir / "simulated"
        self._renders: dict[str, asyncio.Task[None]] = {}

    def model_id(self, request: AnyRequest) -> str:
        if isinstance(request, SoraRequest):
            return "sim-sora-2-pro" if request.is_pro else "sim-sora-2"
        return "sim-kling-2.0"

    def expected_seconds(self, request: AnyRequest) -> tuple[float, float]:
        low, high = request.typical_wait()
        return (low * self.settings.simulated_speed, high * self.settings.simulated_speed)

    # -- task files --------------------------------------------------------------------------

    def _task_path(self, task_id: str) -> Path:
        if not re.fullmatch(r"sim-[0-9]+-[0-9a-f]+", task_id):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "unknown simulated task")
        return self.work_dir / f"{task_id}.json"

    def _load(self, task_id: str) -> dict:
        try:
            return json.loads(self._task_path(task_id).read_text())
        except FileNotFoundError:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "unknown simulated task") from None

    def _save(self, task_id: str, task: dict) -> None:
        path = self._task_path(task_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(task))
        os.replace(tmp, path)

    def _failure(self, request: AnyRequest) -> tuple[str | None, bool]:
        match = FAIL.search(request.prompt)
        if match:
            return match.group(2), bool(match.group(1))
        return self.settings.simulated_fail or None, False

    def _error(self, kind: str, request: AnyRequest) -> ProviderError:
        try:
            error_kind = ErrorKind(kind)
        except ValueError:
            error_kind = ErrorKind.INVALID_REQUEST
        model = self.model_id(request)
        messages = {
            ErrorKind.CONTENT_POLICY: "the simulated moderation flagged this prompt",
            ErrorKind.MODEL_UNAVAILABLE: f"model {model} has been retired",
            ErrorKind.QUOTA_OR_BILLING: "the simulated account is out of credit",
            ErrorKind.AUTH: "the simulated API key is invalid",
            ErrorKind.RATE_LIMITED: "too many simulated requests",
            ErrorKind.TRANSIENT: "simulated server error (503)",
            ErrorKind.INVALID_REQUEST: "the simulated provider refused the request",
        }
        retry_after = 2.0 * self.settings.simulated_speed if error_kind is ErrorKind.RATE_LIMITED else None
        return ProviderError(error_kind, messages[error_kind], retry_after=retry_after, model=model)

    # -- interface -----------------------------------------------------------------------------

    async def submit(self, ctx: JobContext) -> str:
        request = ctx.request
        kind, once = self._failure(request)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if kind and kind not in ("content_policy", "expired"):
            marker = self.work_dir / f"attempts-{ctx.job_id}"
            attempts = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(attempts + 1))
            if not once or attempts == 0:
                raise self._error(kind, request)
        low, high = self.expected_seconds(request)
        digest = hashlib.sha256(f"{ctx.job_id}:{request.seed}:{request.prompt}".encode()).digest()
        wait = low + (high - low) * (digest[0] / 255)
        task_id = f"sim-{ctx.job_id}-{secrets.token_hex(4)}"
        now = self.clock()
        self._save(task_id, {
            "model": request.model.value,
            "request": request.model_dump_json(),
            "job_id": ctx.job_id,
            "submitted_at": now,
            "ready_at": now + wait,
            "canceled": False,
            "output": None,
        })
        return task_id

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        task = self._load(provider_job_id)
        if task["canceled"]:
            return StatusResult(ProviderState.CANCELED)
        request = request_from_json(task["model"], task["request"])
        now = self.clock()
        span = max(task["ready_at"] - task["submitted_at"], 1e-6)
        if now < task["ready_at"]:
            progress = int(min(99, max(0, (now - task["submitted_at"]) / span * 100)))
            state = ProviderState.QUEUED if progress < 10 else ProviderState.RUNNING
            return StatusResult(state, progress=progress)
        kind, _ = self._failure(request)
        if kind == "content_policy":
            return StatusResult(ProviderState.FAILED, error=self._error(kind, request))
        output = self.work_dir / f"{provider_job_id}.mp4"
        if output.exists():
            return StatusResult(ProviderState.SUCCEEDED, progress=100, result_url=output.resolve().as_uri())
        render = self._renders.get(provider_job_id)
        if render is None or (render.done() and render.exception() is not None):
            reference = ctx.request.reference_image
            render = asyncio.create_task(asyncio.to_thread(
                render_video, output, width=request.size[0], height=request.size[1], seconds=request.seconds,
                fps=self.settings.simulated_fps, audio=request.has_audio, title=f"{request.label} (simulated)",
                prompt=request.prompt, first_frame=Path(reference) if reference else None,
                seed=request.seed or task["job_id"],
            ))
            self._renders[provider_job_id] = render
        try:
            await asyncio.shield(render)
        except Exception as error:
            raise ProviderError(ErrorKind.TRANSIENT, f"simulated render failed: {type(error).__name__}") from None
        finally:
            if render.done():
                self._renders.pop(provider_job_id, None)
        return StatusResult(ProviderState.SUCCEEDED, progress=100, result_url=output.resolve().as_uri())

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        kind, _ = self._failure(ctx.request)
        if kind == "expired":
            raise ProviderError(ErrorKind.INVALID_REQUEST, "the provider's output expired before download",
                                provider_code="output_expired")
        source = Path(url2pathname(urlsplit(result_url).path))
        if not source.resolve().is_relative_to(self.work_dir.resolve()):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "not a simulated output")
        return await asyncio.to_thread(_copy_capped, source, dest, max_bytes)

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        task = self._load(provider_job_id)
        task["canceled"] = True
        self._save(provider_job_id, task)
        return True


def _copy_capped(source: Path, dest: Path, max_bytes: int) -> int:
    """Stream a file in chunks (never whole in memory), refusing more than `max_bytes`."""
    tmp = dest.with_name(f".{dest.name}.part")
    total = 0
    try:
        with source.open("rb") as reader, tmp.open("wb") as writer:
            while chunk := reader.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise ProviderError(ErrorKind.INVALID_REQUEST, "the video is larger than the bot accepts")
                writer.write(chunk)
        os.replace(tmp, dest)
    except FileNotFoundError:
        raise ProviderError(ErrorKind.INVALID_REQUEST, "the simulated output is gone",
                            provider_code="output_expired") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return total
