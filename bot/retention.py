"""Disk hygiene: delivered videos (and fitted first frames) are removed after KEEP_VIDEOS_HOURS.

Undelivered results are kept: `/job show` is the user's only way to get them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from storage import Store

log = logging.getLogger(__name__)
SWEEP_EVERY = 3600.0


async def sweep(store: Store, keep_hours: float, *, now: float | None = None, refs_dir: Path | None = None) -> int:
    """Delete expired result files (and the job's fitted first frame) and forget their paths."""
    cutoff = (time.time() if now is None else now) - keep_hours * 3600
    removed = 0
    for job in await store.jobs.results_finished_before(cutoff):
        assert job.result_path is not None
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(Path(job.result_path).unlink)
            removed += 1
        if refs_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread((refs_dir / f"job{job.id}.png").unlink)
        await store.jobs.update(job.id, result_path=None)
    return removed


async def run_forever(store: Store, keep_hours: float, refs_dir: Path | None = None) -> None:
    while True:
        try:
            count = await sweep(store, keep_hours, refs_dir=refs_dir)
            if count:
                log.info("retention: removed %d delivered videos", count)
        except Exception:
            log.exception("retention sweep failed; will try again")
        await asyncio.sleep(SWEEP_EVERY if keep_hours > 0 else 60.0)
