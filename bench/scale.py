"""10,000 in-flight jobs in SQLite: poller tick time, idle CPU and memory, claim throughput.

Two baselines: the naive poller (read every in-flight row each tick and filter in Python, a
strawman) and the plain SQL a competent peer would write without our partial index on
`next_run_at` (`SELECT MIN(next_run_at)` and a claiming `UPDATE … ORDER BY next_run_at LIMIT`,
both scanning the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.common import rss_kib, table
from bench.fixtures import insert_in_flight, naive_due_scan, plain_claim, plain_next_due
from bot.config import Settings
from bot.crypto import SecretBox
from bot.poller import Poller
from bot.providers.registry import ProviderRegistry
from bot.runner import JobRunner
from storage import CreditPolicy, Store

IN_FLIGHT = 10_000


async def timed(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(repeat):
        await fn()
    return (time.perf_counter() - started) / repeat * 1000


async def claim_rate(path: Path, workers: int, jobs: int) -> float:
    stores = [await Store.open(path, CreditPolicy()) for _ in range(workers)]
    claimed = 0

    async def work(store: Store, name: str) -> None:
        nonlocal claimed
        while True:
            batch = await store.jobs.claim_due(name, lease_seconds=600, limit=20)
            if not batch:
                return
            claimed += len(batch)

    started = time.perf_counter()
    await asyncio.gather(*(work(store, f"w{n}") for n, store in enumerate(stores)))
    elapsed = time.perf_counter() - started
    for store in stores:
        await store.close()
    assert claimed == jobs, (claimed, jobs)
    return claimed / elapsed


async def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    store = await Store.open(folder / "db.sqlite3", CreditPolicy())
    await insert_in_flight(store, IN_FLIGHT, due_in=3600)  # none due: the steady state of long renders
    ours = await timed(lambda: store.jobs.next_due_at())
    claim_none = await timed(lambda: store.jobs.claim_due("x", lease_seconds=60, limit=16))
    naive = await timed(lambda: naive_due_scan(store))
    plain = await timed(lambda: plain_next_due(store))
    plain_claim_none = await timed(lambda: plain_claim(store, "x"))
    settings = Settings(database_path=folder / "db.sqlite3", video_dir=folder / "v")
    runner = JobRunner(store, ProviderRegistry(settings), settings, notifier=None,  # type: ignore[arg-type]
                       secrets=SecretBox("b" * 32))
    poller = Poller(store, runner, settings)
    rss_before = rss_kib(os.getpid())
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    poller.start()
    await asyncio.sleep(5)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    idle_cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / 5
    iterations = poller.iterations
    with contextlib.suppress(Exception):
        await poller.stop()
    await store.close()
    table(f"Poller with {IN_FLIGHT:,} in-flight jobs, none due",
          ["measure", "ours", "plain SQL, no index", "naive full scan", "vs plain", "vs naive"], [
        ["tick: find the next due time (ms)", f"{ours:.2f}", f"{plain:.2f}", f"{naive:.1f}", f"{ours / plain:.3f}x",
         f"{ours / naive:.3f}x"],
        ["tick: claim due jobs (ms)", f"{claim_none:.2f}", f"{plain_claim_none:.2f}", f"{naive:.1f}",
         f"{claim_none / plain_claim_none:.3f}x", f"{claim_none / naive:.3f}x"],
        ["idle CPU over 5 s (% of a core)", f"{idle_cpu:.2%}", "-", "-", "-", "-"],
        ["loop iterations in 5 s", str(iterations), "-", "-", "-", "-"],
        ["process RSS (MiB)", f"{rss_before / 1024:.0f}", "-", "-", "-", "-"],
    ])
    rows = []
    for workers in (1, 2, 4):
        path = folder / f"claim{workers}.sqlite3"
        fresh = await Store.open(path, CreditPolicy())
        await insert_in_flight(fresh, IN_FLIGHT, due_in=-7200)  # all due
        await fresh.close()
        rows.append([str(workers), f"{await claim_rate(path, workers, IN_FLIGHT):,.0f}"])
    base = float(rows[0][1].replace(",", ""))
    for row in rows:
        row.append(f"{float(row[1].replace(',', '')) / base:.2f}x")
    table(f"Claim throughput, {IN_FLIGHT:,} due jobs, SQLite (one process, N concurrent workers)",
          ["workers", "jobs/s", "vs 1 worker"], rows)


if __name__ == "__main__":
    asyncio.run(main())
