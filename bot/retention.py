"""Disk hygiene: delivered videos (and fitted first frames) are removed after KEEP_VIDEOS_HOURS.

Undelivered results are kept: `/job show` is the user's only way to get them. Files no job owns
any more (a process died between finishing a download and learning the job was canceled, or a
half-written `.part` survived a kill) are removed too: they were refunded and must not linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from pathlib import Path

from storage import JobState, Store

log = logging.getLogger(__name__)
SWEEP_EVERY = 3600.0
RESULT_NAME = re.compile(r"job([1-9][0-9]{0,17})\.mp4")
STALE_PART_SECONDS = 24 * 3600.0  # a download never takes this long; the writer is gone


async def sweep_orphans(store: Store, video_dir: Path, *, now: float | None = None) -> int:
    """Remove result files of canceled/failed (or unknown) jobs and stale partial downloads."""
    now = time.time() if now is None else now
    try:
        entries = await asyncio.to_thread(lambda: [p for p in video_dir.iterdir() if p.is_file()])
    except FileNotFoundError:
        return 0
    removed = 0
    for path in entries:
        match = RESULT_NAME.fullmatch(path.name)
        if match is not None:
            job = await store.jobs.get(int(match.group(1)))
            orphan = job is None or (job.state in (JobState.CANCELED, JobState.FAILED) and job.result_path is None)
        else:
            orphan = path.name.endswith(".part") and now - path.stat().st_mtime > STALE_PART_SECONDS
        if orphan:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
                removed += 1
    return removed


async def sweep_prepared(prepared_dir: Path, *, now: float | None = None) -> int:
    """Remove what a delivery prepared (remuxed, re-encoded or blind clips) and a crash left behind.

    Delivery removes its own folder once the post is done; one survives only a kill mid-post, and
    the retry that reuses it runs within minutes, so a folder untouched for a day has no reader.
    """
    now = time.time() if now is None else now

    def stale() -> list[Path]:
        try:
            return [p for p in prepared_dir.iterdir() if now - p.stat().st_mtime > STALE_PART_SECONDS]
        except FileNotFoundError:
            return []

    removed = 0
    for path in await asyncio.to_thread(stale):
        if path.is_dir():
            await asyncio.to_thread(shutil.rmtree, path, True)
        else:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
        removed += 1
    return removed


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


async def run_forever(store: Store, keep_hours: float, refs_dir: Path | None = None,
                      prepared_dir: Path | None = None) -> None:
    while True:
        try:
            count = await sweep(store, keep_hours, refs_dir=refs_dir)
            if count:
                log.info("retention: removed %d delivered videos", count)
            if refs_dir is not None and (orphans := await sweep_orphans(store, refs_dir.parent)):
                log.info("retention: removed %d files of canceled or unknown jobs", orphans)
            if prepared_dir is not None and (left := await sweep_prepared(prepared_dir)):
                log.info("retention: removed %d prepared uploads left by an interrupted delivery", left)
        except Exception:
            log.exception("retention sweep failed; will try again")
        await asyncio.sleep(SWEEP_EVERY if keep_hours > 0 else 60.0)
