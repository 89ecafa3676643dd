"""Claim throughput: 1, 2 and 4 workers on PostgreSQL (SKIP LOCKED) versus SQLite in one process."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import asyncpg

from bench.common import table
from bench.fixtures import insert_in_flight
from bench.scale import claim_rate
from storage import CreditPolicy, Store
from tests.pg import PostgresUnavailable, TempPostgres

JOBS = 10_000


async def fresh_postgres(base: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return base.rsplit("/", 1)[0] + f"/{name}"


async def filled(location: str | Path) -> str | Path:
    store = await Store.open(location, CreditPolicy())
    await insert_in_flight(store, JOBS, due_in=-7200)
    await store.close()
    return location


async def main() -> None:
    try:
        server = TempPostgres()
        base = server.start()
    except PostgresUnavailable as error:
        print(f"\nPostgreSQL claim benchmark skipped: {error}")
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-claims-"))
    try:
        sqlite = await claim_rate(await filled(folder / "one.sqlite3"), 1, JOBS)  # type: ignore[arg-type]
        rows = [["SQLite", "1", f"{sqlite:,.0f}", "1.00x"]]
        for workers in (1, 2, 4):
            rate = await claim_rate(await filled(await fresh_postgres(base)), workers, JOBS)  # type: ignore[arg-type]
            rows.append(["PostgreSQL", str(workers), f"{rate:,.0f}", f"{rate / sqlite:.2f}x"])
    finally:
        server.stop()
    table(f"Claim throughput, {JOBS:,} due jobs, batches of 20", ["store", "workers", "jobs/s", "vs SQLite"], rows)


if __name__ == "__main__":
    asyncio.run(main())
