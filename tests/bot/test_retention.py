"""Retention: delivered videos go after KEEP_VIDEOS_HOURS; undelivered ones stay for /job show."""

from __future__ import annotations

from pathlib import Path

from bot.retention import sweep
from storage import JobState, NewJob, Store

NOW = 1_800_000_000.0


async def finished_job(store: Store, tmp_path: Path, state: JobState, finished_at: float) -> int:
    [job] = await store.jobs.create([NewJob(user_id=1, model="kling", provider="simulated", request_json="{}",
                                            price=1)], now=finished_at)
    path = tmp_path / f"job{job.id}.mp4"
    path.write_bytes(b"video")
    await store.jobs.update(job.id, state=JobState.SUBMITTING, now=finished_at)
    await store.jobs.update(job.id, state=JobState.SUBMITTED, now=finished_at)
    await store.jobs.update(job.id, state=JobState.DOWNLOADED, result_path=str(path), now=finished_at)
    await store.jobs.update(job.id, state=state, now=finished_at)
    return job.id


async def test_sweep_removes_only_expired_delivered_files(store: Store, tmp_path: Path) -> None:
    old = await finished_job(store, tmp_path, JobState.DELIVERED, NOW - 48 * 3600)
    fresh = await finished_job(store, tmp_path, JobState.DELIVERED, NOW - 3600)
    stranded = await finished_job(store, tmp_path, JobState.UNDELIVERED, NOW - 48 * 3600)
    assert await sweep(store, 24, now=NOW) == 1
    assert not (tmp_path / f"job{old}.mp4").exists()
    assert (await store.jobs.get(old)).result_path is None  # type: ignore[union-attr]
    assert (tmp_path / f"job{fresh}.mp4").exists() and (tmp_path / f"job{stranded}.mp4").exists()
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / f"job{fresh}.png").write_bytes(b"first frame")
    assert await sweep(store, 0, now=NOW, refs_dir=refs) == 1  # keep 0 h: delivered files go at once
    assert not (refs / f"job{fresh}.png").exists()
    assert (tmp_path / f"job{stranded}.mp4").exists()


async def test_price_overrides_reach_other_processes(location, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Prices are cached per process only briefly: another process's change shows after the TTL."""
    from storage.store import PriceStore

    first, second = await Store.open(location), await Store.open(location)
    try:
        assert await first.prices.overrides() == {}
        await second.prices.set("kling_per_second", 5, actor_id=1)
        assert await first.prices.overrides() == {}  # still cached
        monkeypatch.setattr(PriceStore, "CACHE_SECONDS", 0.0)
        assert await first.prices.overrides() == {"kling_per_second": 5}
    finally:
        await first.close()
        await second.close()


async def test_orphan_files_of_canceled_or_unknown_jobs_are_removed(store: Store, tmp_path: Path) -> None:
    """E.g. a process died between finishing a download and seeing the job canceled."""
    import os

    from bot.retention import sweep_orphans

    tmp_path = tmp_path / "videos"  # the store's own files live in the test's folder
    tmp_path.mkdir()

    [canceled, running] = await store.jobs.create(
        [NewJob(user_id=1, model="kling", provider="simulated", request_json="{}", price=1) for _ in range(2)],
        now=NOW)
    await store.jobs.update(canceled.id, state=JobState.CANCELED, error_code="canceled", now=NOW)
    await store.jobs.update(running.id, state=JobState.SUBMITTING, now=NOW)
    await store.jobs.update(running.id, state=JobState.SUBMITTED, now=NOW)
    delivered = await finished_job(store, tmp_path, JobState.DELIVERED, NOW)
    for name in (f"job{canceled.id}.mp4", f"job{running.id}.mp4", "job99999.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    stale, fresh = tmp_path / ".job5.mp4.abc.part", tmp_path / ".job6.mp4.def.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (NOW - 25 * 3600, NOW - 25 * 3600))
    os.utime(fresh, (NOW - 60, NOW - 60))
    assert await sweep_orphans(store, tmp_path, now=NOW) == 3
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert left == sorted([f"job{running.id}.mp4", f"job{delivered}.mp4", "notes.txt", fresh.name])
    assert await sweep_orphans(store, tmp_path / "missing", now=NOW) == 0


async def test_prepared_uploads_left_by_a_crash_are_removed_after_a_day(tmp_path: Path) -> None:
    """A kill mid-post leaves delivery's prepared folder; the retry reuses it, a day later nobody will."""
    import os

    from bot.retention import STALE_PART_SECONDS, sweep_prepared

    prepared = tmp_path / "prepared"
    old, fresh = prepared / "job7", prepared / "cmp3"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "A.mp4").write_bytes(b"x" * 100)
    os.utime(old, (NOW - STALE_PART_SECONDS - 60, NOW - STALE_PART_SECONDS - 60))
    os.utime(fresh, (NOW - 60, NOW - 60))
    assert await sweep_prepared(prepared, now=NOW) == 1
    assert not old.exists() and (fresh / "A.mp4").exists()
    assert await sweep_prepared(tmp_path / "missing", now=NOW) == 0
