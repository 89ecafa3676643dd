"""Startup: process start → logged in, commands synced, ready; empty database vs 10,000 jobs."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.common import bench_bot, mean, table
from bench.fixtures import insert_in_flight
from bot.sandbox.discord import LoopbackDiscord
from storage import CreditPolicy, Store

RUNS = 3


async def measure(server: LoopbackDiscord, data: Path) -> float:
    times = []
    for _ in range(RUNS):
        bot = bench_bot(server, data)
        times.append(await bot.start())
        await bot.stop()
    return mean(times)


async def main() -> None:
    server = LoopbackDiscord()
    await server.start()
    empty = Path(tempfile.mkdtemp(prefix="bench-start-"))
    full = Path(tempfile.mkdtemp(prefix="bench-start-"))
    store = await Store.open(full / "bot.sqlite3", CreditPolicy())
    await insert_in_flight(store, 10_000, due_in=3600)
    await store.close()
    try:
        cold = await measure(server, empty)
        loaded = await measure(server, full)
    finally:
        await server.stop()
    table(f"Startup to commands synced (s, mean of {RUNS})", ["database", "seconds", "vs empty"], [
        ["empty", f"{cold:.2f}", "1.00x"], ["10,000 in-flight jobs", f"{loaded:.2f}", f"{loaded / cold:.2f}x"]])


if __name__ == "__main__":
    asyncio.run(main())
