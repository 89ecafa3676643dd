"""The simulated provider: real MP4s rendered locally, on the models' own timetable.

It lets the bot run with no paid account (the real Sora API is gone, PROVIDERS.md) and lets tests
drive every error of the taxonomy. Task state lives in small JSON files in the work dir, never
only in memory, so a restarted bot continues the tasks the old process submitted.

Timing: a task is ready `typical_wait()` (the model catalogue, drawn deterministically from the job id and
seed) × `SIMULATED_SPEED` seconds after submit. It reports QUEUED for the first tenth of the wait,
RUNNING with growing progress after that, and once ready renders the MP4 (PyAV, in a thread, once)
and reports SUCCEEDED with a `file://` result URL.

Failure keywords, in the prompt or as `SIMULATED_FAIL=<kind>` for every job:

- `[fail:invalid_request]`, `[fail:quota_or_billing]`, `[fail:model_unavailable]` (the message
  names the model id), `[fail:auth]`, `[fail:transient]`: `submit` raises that ProviderError;
- `[fail:rate_limited]`: `submit` raises with `retry_after` = 2 s × `SIMULATED_SPEED`;
- `[fail:content_policy]`: submit succeeds; `status` reports FAILED after the usual wait, as real
  moderation does;
- `[fail:expired]`: the render succeeds but `fetch` fails as if the output had expired
  (invalid_request, provider_code `output_expired`);
- `[fail-once:<kind>]`: the same, but only for the first submit of that job id (attempts are counted
  on disk), so retry paths can be tested;
- any other kind is a typo and fails `submit` as invalid_request.

Rendered outputs are deleted after a day (like real providers' output expiry), so the work dir
does not grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from bot.config import Settings
from bot.faults import crash_point
from bot.providers.base import (
    ErrorKind,
    JobContext,
    ProviderError,
    ProviderState,
    StatusResult,
    VideoProvider,
)
from bot.render import render_video
from bot.requests import AnyRequest, request_from_json

FAIL = re.compile(r"\[fail(-once)?:([a-z_]+)\]")
TASK_ID = re.compile(r"sim-[0-9]+-[0-9a-f]{8}")
AT_STATUS = "content_policy"
AT_FETCH = "expired"
QUEUED_FRACTION = 0.1  # the first tenth of the wait reports QUEUED, like a provider's queue
CHUNK = 256 * 1024
OUTPUT_TTL_SECONDS = 24 * 3600.0
SWEEP_EVERY_SECONDS = 3600.0
MESSAGES = {
    ErrorKind.INVALID_REQUEST: "the simulated provider refused the request",
    ErrorKind.CONTENT_POLICY: "the simulated moderation flagged this prompt",
    ErrorKind.QUOTA_OR_BILLING: "the simulated account is out of credit",
    ErrorKind.MODEL_UNAVAILABLE: "model {model} has been retired",
    ErrorKind.RATE_LIMITED: "too many simulated requests",
    ErrorKind.TRANSIENT: "simulated server error (503)",
    ErrorKind.AUTH: "the simulated API key is invalid",
}


class SimulatedProvider(VideoProvider):
    """Renders with PyAV after a wait drawn from the model's typical range × SIMULATED_SPEED."""

    name = "simulated"
    can_cancel = True

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 work_dir: Path | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.work_dir = work_dir or settings.video_dir / "simulated"
        self._renders: dict[str, asyncio.Task[None]] = {}
        self._last_sweep = -SWEEP_EVERY_SECONDS

    def model_id(self, request: AnyRequest) -> str:
        return request.spec.provider_id(self.name) or f"sim-{request.model_id}"

    def expected_seconds(self, request: AnyRequest) -> tuple[float, float]:
        low, high = request.typical_wait()
        return (low * self.settings.simulated_speed, high * self.settings.simulated_speed)

    # -- interface ----------------------------------------------------------------------------

    async def submit(self, ctx: JobContext) -> str:
        request = ctx.request
        self.work_dir.mkdir(parents=True, exist_ok=True)
        await self._maybe_sweep()
        failure = self._planned_failure(ctx)
        if failure is not None and failure not in (AT_STATUS, AT_FETCH):
            raise self._error(failure, request)
        low, high = self.expected_seconds(request)
        digest = hashlib.sha256(f"{ctx.job_id}:{request.seed}".encode()).digest()
        wait = low + (high - low) * int.from_bytes(digest[:8], "big") / 2**64
        task_id = f"sim-{ctx.job_id}-{secrets.token_hex(4)}"
        now = self.clock()
        self._save(task_id, {
            "job_id": ctx.job_id,
            "model": request.model.value,
            "request": request.model_dump_json(),
            "submitted_at": now,
            "ready_at": now + wait,
            "fail": failure,
            "reference": await asyncio.to_thread(self._keep_reference, task_id, request.reference_image),
            "canceled": False,
            "request_key": ctx.request_key,
        })
        crash_point("provider_accepted")  # the task exists, the bot has not read the answer yet
        return task_id

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        task = self._load(provider_job_id)
        if task["canceled"]:
            return StatusResult(ProviderState.CANCELED)
        now = self.clock()
        if now < task["ready_at"]:
            span = max(task["ready_at"] - task["submitted_at"], 1e-9)
            done = max(0.0, (now - task["submitted_at"]) / span)
            if done < QUEUED_FRACTION:
                return StatusResult(ProviderState.QUEUED, progress=0)
            return StatusResult(ProviderState.RUNNING, progress=min(99, max(1, int(done * 100))))
        request = request_from_json(task["model"], task["request"])
        if task["fail"] == AT_STATUS:
            return StatusResult(ProviderState.FAILED, error=self._error(AT_STATUS, request))
        output = self._output(provider_job_id)
        if not output.exists():
            await self._render_once(provider_job_id, task, request, output)
        return StatusResult(ProviderState.SUCCEEDED, progress=100, result_url=output.resolve().as_uri())

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        parts = urlsplit(result_url)
        source = Path(url2pathname(parts.path))
        task_id = source.name.removesuffix(".mp4")
        inside = source.resolve().parent == self.work_dir.resolve()
        if parts.scheme != "file" or not inside or not TASK_ID.fullmatch(task_id):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "not a simulated output")
        try:
            task = self._load(task_id)
        except ProviderError:
            task = {"fail": AT_FETCH}  # swept with its output: the output has expired
        if task["fail"] == AT_FETCH:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "the provider's output expired before download",
                                provider_code="output_expired")
        return await asyncio.to_thread(_copy_capped, source, dest, max_bytes)

    async def find(self, request_key: str, ctx: JobContext) -> list[str]:
        """Tasks of this job whose stored key matches, oldest first (task ids start with the job id)."""
        found: list[tuple[float, str]] = []
        for path in self.work_dir.glob(f"sim-{ctx.job_id}-*.json"):
            task_id = path.stem
            try:
                task = self._load(task_id)
            except (ProviderError, ValueError):
                continue
            if task.get("request_key") == request_key:
                found.append((float(task["submitted_at"]), task_id))
        return [task_id for _, task_id in sorted(found)]

    async def cancel(self, provider_job_id: str, ctx: JobContext) -> bool:
        try:
            task = self._load(provider_job_id)
        except ProviderError:
            return False
        task["canceled"] = True
        self._save(provider_job_id, task)
        return True

    # -- failures -----------------------------------------------------------------------------

    def _planned_failure(self, ctx: JobContext) -> str | None:
        """The failure this submit should produce; `fail-once` counts attempts on disk per job."""
        match = FAIL.search(ctx.request.prompt)
        if match is None:
            kind = (self.settings.simulated_fail or "").strip().lower()
            return kind or None
        kind, once = match.group(2), bool(match.group(1))
        if not once:
            return kind
        marker = self.work_dir / f"attempts-{ctx.job_id}.json"
        try:
            attempts = int(json.loads(marker.read_text())["attempts"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            attempts = 0
        _write_atomic(marker, json.dumps({"attempts": attempts + 1}))
        return kind if attempts == 0 else None

    def _error(self, kind: str, request: AnyRequest) -> ProviderError:
        model = self.model_id(request)
        try:
            error_kind = ErrorKind(kind)
        except ValueError:
            return ProviderError(ErrorKind.INVALID_REQUEST, f"unknown simulated failure {kind!r}", model=model,
                                 provider_code="sim_unknown_failure")
        retry_after = 2.0 * self.settings.simulated_speed if error_kind is ErrorKind.RATE_LIMITED else None
        return ProviderError(error_kind, MESSAGES[error_kind].format(model=model), retry_after=retry_after,
                             model=model, provider_code=f"sim_{error_kind.value}")

    # -- rendering ----------------------------------------------------------------------------

    async def _render_once(self, task_id: str, task: dict[str, Any], request: AnyRequest, output: Path) -> None:
        """Start the render unless one is running in this process, and wait for it.

        The render task is shielded: a caller that times out or is cancelled does not stop it, and
        the next status call joins it instead of starting a second one.
        """
        render = self._renders.get(task_id)
        if render is None:
            reference = self.work_dir / task["reference"] if task.get("reference") else None
            width, height = request.size
            render = asyncio.create_task(asyncio.to_thread(
                render_video, output, width=width, height=height, seconds=request.seconds,
                fps=self.settings.simulated_fps, audio=request.has_audio,
                # A blind /compare clip must not name its model, nor its length (which does too).
                title="Simulated clip" if request.blind else f"{request.label} (simulated)",
                show_length=not request.blind,
                prompt=request.prompt, first_frame=reference if reference and reference.exists() else None,
                seed=request.seed if request.seed is not None else task["job_id"],
            ))
            self._renders[task_id] = render
            render.add_done_callback(lambda done: self._render_done(task_id, done))
        try:
            await asyncio.shield(render)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise ProviderError(ErrorKind.TRANSIENT, f"simulated render failed: {type(error).__name__}") from None

    def _render_done(self, task_id: str, render: asyncio.Task[None]) -> None:
        """Forget a finished render: the file now exists, or the next status call tries again."""
        if self._renders.get(task_id) is render:
            del self._renders[task_id]
        if not render.cancelled():
            render.exception()  # retrieved here so a failure nobody awaited is not logged as lost

    def _keep_reference(self, task_id: str, reference: str | None) -> str | None:
        """Copy the first frame into the work dir, as a real provider keeps its upload."""
        if not reference or not Path(reference).is_file():
            return None
        name = f"{task_id}.ref{Path(reference).suffix.lower() or '.png'}"
        shutil.copyfile(reference, self.work_dir / name)
        return name

    # -- task files ---------------------------------------------------------------------------

    def _output(self, task_id: str) -> Path:
        return self.work_dir / f"{task_id}.mp4"

    def _task_path(self, task_id: str) -> Path:
        if not TASK_ID.fullmatch(task_id):
            raise ProviderError(ErrorKind.INVALID_REQUEST, "unknown simulated task", provider_code="not_found")
        return self.work_dir / f"{task_id}.json"

    def _load(self, task_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._task_path(task_id).read_text())
        except FileNotFoundError:
            raise ProviderError(ErrorKind.INVALID_REQUEST, "unknown simulated task",
                                provider_code="not_found") from None

    def _save(self, task_id: str, task: dict[str, Any]) -> None:
        _write_atomic(self._task_path(task_id), json.dumps(task))

    async def _maybe_sweep(self) -> None:
        """At most hourly: delete work files older than the output TTL (real time: file mtimes are)."""
        if time.monotonic() - self._last_sweep < SWEEP_EVERY_SECONDS:
            return
        self._last_sweep = time.monotonic()
        await asyncio.to_thread(sweep_work_dir, self.work_dir, OUTPUT_TTL_SECONDS)


def sweep_work_dir(work_dir: Path, max_age: float, *, now: float | None = None) -> int:
    """Remove task files, outputs and leftovers not touched for `max_age` seconds; return the count."""
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for path in work_dir.iterdir() if work_dir.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_capped(source: Path, dest: Path, max_bytes: int) -> int:
    """Stream a file in chunks (never whole in memory), refusing more than `max_bytes`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    total = 0
    try:
        with source.open("rb") as reader, tmp.open("wb") as writer:
            while chunk := reader.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise ProviderError(ErrorKind.INVALID_REQUEST,
                                        f"the video is larger than the bot accepts ({max_bytes} bytes)")
                writer.write(chunk)
        os.replace(tmp, dest)
    except FileNotFoundError:
        if source.exists():
            raise  # the destination is the problem, not the provider
        raise ProviderError(ErrorKind.INVALID_REQUEST, "the simulated output is gone",
                            provider_code="output_expired") from None
    finally:
        tmp.unlink(missing_ok=True)
    return total
