"""Several worker processes on one PostgreSQL: no job done twice, none lost, a dead worker's jobs taken over."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from storage import CreditPolicy, JobState, NewJob, Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


async def make_jobs(url: str, count: int) -> None:
    store = await Store.open(url, CreditPolicy(start_balance=10**6, daily_grant=0, max_concurrent_jobs=10**6))
    for user in range(count // 10):
        await store.jobs.create([NewJob(user_id=user, model="kling", provider="instant",
                                        request_json='{"prompt": "p"}', price=1) for _ in range(10)])
    await store.close()


async def worker(url: str, name: str, logs: Path, crash_after: int | None = None) -> asyncio.subprocess.Process:
    args = [url, name, str(logs)] + ([str(crash_after)] if crash_after else [])
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.worker_proc", *args, cwd=str(ROOT))


def read(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def check(url: str, count: int) -> dict[str, int]:
    store = await Store.open(url)
    states = await store.jobs.count_by_state()
    audit = await store.ledger.audit()
    await store.close()
    assert states == {JobState.DELIVERED: count}
    assert audit == {"balance_mismatch": 0, "negative_balance": 0, "unsettled_finished_jobs": 0,
                     "duplicate_entries": 0}
    return audit


async def test_two_workers_race_over_a_thousand_jobs(location: str | Path, tmp_path: Path) -> None:
    if not isinstance(location, str):
        pytest.skip("several processes share a job store on PostgreSQL")
    await make_jobs(location, 1000)
    started = time.perf_counter()
    processes = [await worker(location, name, tmp_path) for name in ("w1", "w2")]
    async with asyncio.timeout(240):
        codes = [await process.wait() for process in processes]
    assert codes == [0, 0]
    submits = Counter(read(tmp_path / "w1.submits") + read(tmp_path / "w2.submits"))
    deliveries = Counter(read(tmp_path / "w1.deliveries") + read(tmp_path / "w2.deliveries"))
    assert len(submits) == 1000 and max(submits.values()) == 1, "a job was submitted twice"
    assert len(deliveries) == 1000 and max(deliveries.values()) == 1, "a job was delivered twice"
    shares = (len(read(tmp_path / "w1.deliveries")), len(read(tmp_path / "w2.deliveries")))
    print(f"\n1000 jobs, 2 workers: split {shares}, {time.perf_counter() - started:.1f} s")
    assert min(shares) > 0  # both really worked
    await check(location, 1000)


async def test_a_killed_workers_leases_are_finished_by_the_other(location: str | Path, tmp_path: Path) -> None:
    if not isinstance(location, str):
        pytest.skip("several processes share a job store on PostgreSQL")
    await make_jobs(location, 100)
    doomed = await worker(location, "doomed", tmp_path, crash_after=5)
    assert await asyncio.wait_for(doomed.wait(), 60) == -9
    orphaned = read(tmp_path / "doomed.submits")
    survivor = await worker(location, "survivor", tmp_path)
    async with asyncio.timeout(120):
        assert await survivor.wait() == 0
    deliveries = Counter(read(tmp_path / "survivor.deliveries") + read(tmp_path / "doomed.deliveries"))
    assert len(deliveries) == 100 and max(deliveries.values()) == 1
    assert set(orphaned) <= set(deliveries)  # the jobs the dead worker held were finished by the other
    await check(location, 100)
