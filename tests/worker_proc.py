"""A poller worker process for the multi-process tests: instant fake provider, results logged.

Usage: python -m tests.worker_proc DATABASE_URL NAME LOG_DIR [CRASH_AFTER]
Each submit and each delivery appends a job id to LOG_DIR/NAME.submits / NAME.deliveries. With
CRASH_AFTER=n the process SIGKILLs itself right after its n-th submit (leases still held).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.crypto import SecretBox
from bot.poller import Poller
from bot.providers.base import JobContext, ProviderState, StatusResult, VideoProvider
from bot.providers.registry import ProviderRegistry
from bot.runner import Delivered, JobRunner
from storage import CreditPolicy, Store
from tests.notifiers import QuietNotifier


class InstantProvider(VideoProvider):
    name = "instant"

    def __init__(self, log: Path, crash_after: int | None) -> None:
        self.log = log
        self.crash_after = crash_after
        self.count = 0

    def expected_seconds(self, request: Any) -> tuple[float, float]:
        return (0.01, 0.02)

    async def submit(self, ctx: JobContext) -> str:
        with self.log.open("a") as handle:
            handle.write(f"{ctx.job_id}\n")
        self.count += 1
        if self.crash_after is not None and self.count >= self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"i{ctx.job_id}"

    async def status(self, provider_job_id: str, ctx: JobContext) -> StatusResult:
        return StatusResult(ProviderState.SUCCEEDED, result_url="file:///dev/null")

    async def fetch(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        dest.write_bytes(b"v")
        return 1


class LogNotifier(QuietNotifier):
    def __init__(self, log: Path) -> None:
        self.log = log

    async def deliver(self, job: Any, *, pair: Any = None) -> Delivered:
        with self.log.open("a") as handle:
            handle.write(f"{job.id}\n")
        return Delivered(job.id, 1)


async def main() -> None:
    url, name, logs = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    crash_after = int(sys.argv[4]) if len(sys.argv) > 4 else None
    settings = Settings(database_url=url, secret_key="w" * 32, video_dir=logs / f"{name}-videos", poll_time_scale=0.001,
                        lease_seconds=2.0, max_parallel_jobs=8, worker_id=name)
    store = await Store.open(url, CreditPolicy(max_concurrent_jobs=10**6))
    provider = InstantProvider(logs / f"{name}.submits", crash_after)
    runner = JobRunner(store, ProviderRegistry(settings, instances={"instant": provider}), settings,
                       notifier=LogNotifier(logs / f"{name}.deliveries"), secrets=SecretBox("w" * 32), owner=name)
    poller = Poller(store, runner, settings)
    await store.on_new_jobs(poller.wake)
    poller.start()
    while True:
        await asyncio.sleep(0.2)
        counts = await store.jobs.count_by_state()
        if counts and not any(state.active or state.value == "downloaded" for state in counts):
            break
    await poller.stop()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
