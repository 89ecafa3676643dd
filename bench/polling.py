"""Polling efficiency: the poller's schedule versus fixed 10 s polling, on the same simulated jobs.

Jobs finish at a time drawn from each model's typical window (MODELS.md: Kling 2-6 min, Sora
5-15 min), compressed 100x in wall time. The baseline polls every 10 s (compressed alike). We count
status requests per finished job and the delay from "ready" to "delivered". Target: at most a
third of the baseline's requests with at most 10 % extra delay.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import mean, percentile, table
from bot.config import Settings
from bot.crypto import SecretBox
from bot.poller import Delivered, Poller, next_poll_delay
from bot.providers.base import JobContext, ProviderState, StatusResult, VideoProvider
from bot.providers.registry import ProviderRegistry
from bot.requests import parse_request
from storage import CreditPolicy, NewJob, Store

COMPRESSION = 0.01
JOBS = 120


class TimedProvider(VideoProvider):
    """Finishes each task at a time drawn from the model's typical window; counts status calls."""

    name = "timed"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ready: dict[str, float] = {}
        self.status_calls = 0

    async def submit(self, ctx: JobContext) -> str:
        low, high = ctx.request.typical_wait()
        task = f"t{ctx.job_id}"
        self.ready[task] = time.monotonic() + self.rng.uniform(low, high) * COMPRESSION
        return task

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        self.status_calls += 1
        if time.monotonic() >= self.ready[provider_job_id]:
            return StatusResult(ProviderState.SUCCEEDED, result_url="file:///dev/null")
        return StatusResult(ProviderState.RUNNING)

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        dest.write_bytes(b"v")
        return 1


class Notes:
    def __init__(self, provider: TimedProvider) -> None:
        self.provider = provider
        self.delays: list[float] = []

    async def deliver(self, job: Any) -> Delivered:
        self.delays.append(time.monotonic() - self.provider.ready[job.provider_job_id])
        return Delivered(job.id, 1)

    async def progress(self, job: Any, status: Any) -> bool:
        return False

    async def ended(self, job: Any) -> None:
        return None


def fixed_ten_seconds(elapsed: float, low: float, high: float, scale: float) -> float:
    return 10.0 * scale


async def run(policy: str) -> tuple[float, float, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    settings = Settings(database_path=folder / "db.sqlite3", video_dir=folder / "v", poll_time_scale=COMPRESSION,
                        max_parallel_jobs=256)
    store = await Store.open(settings.database_path, CreditPolicy(start_balance=10**9, max_concurrent_jobs=10**6))
    provider = TimedProvider(seed=42)
    notes = Notes(provider)
    poller = Poller(store, ProviderRegistry(settings, instances={"timed": provider}), settings, notifier=notes,
                    secrets=SecretBox("b" * 32), owner=policy,
                    poll_delay=next_poll_delay if policy == "adaptive" else fixed_ten_seconds)
    rng = random.Random(1)
    for n in range(JOBS):
        model = rng.choice(["kling", "sora"])
        options = {"duration": rng.choice([5, 10])} if model == "kling" else {"duration": rng.choice([4, 8, 12])}
        request = parse_request(model, prompt=f"job {n}", **options)
        await store.jobs.create([NewJob(user_id=n, model=model, provider="timed",
                                        request_json=request.model_dump_json(), price=1)])
    poller.start()
    async with asyncio.timeout(60 * 15 * COMPRESSION * 3 + 60):
        while len(notes.delays) < JOBS:
            await asyncio.sleep(0.05)
    await poller.stop()
    await store.close()
    return provider.status_calls / JOBS, mean(notes.delays) / COMPRESSION, percentile(notes.delays, 95) / COMPRESSION


async def main() -> None:
    adaptive = await run("adaptive")
    fixed = await run("fixed")
    rows = [["fixed 10 s", f"{fixed[0]:.1f}", f"{fixed[1]:.1f}", f"{fixed[2]:.1f}", "1.00x", "1.00x"],
            ["adaptive (ours)", f"{adaptive[0]:.1f}", f"{adaptive[1]:.1f}", f"{adaptive[2]:.1f}",
             f"{adaptive[0] / fixed[0]:.2f}x", f"{adaptive[1] / fixed[1]:.2f}x"]]
    table(f"Polling efficiency, {JOBS} jobs (Kling/Sora mix), times in model seconds (wall /{1 / COMPRESSION:.0f})",
          ["policy", "requests/job", "mean delay s", "p95 delay s", "requests ratio", "delay ratio"], rows)
    total_fixed = fixed[1] + 0.0
    print(f"  extra delay of ours vs the baseline, relative to the typical wait (~{300:.0f} s): "
          f"{(adaptive[1] - total_fixed) / 300:+.1%}")


if __name__ == "__main__":
    asyncio.run(main())
