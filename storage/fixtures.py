"""Bulk data for benchmarks and load tests (kept here because all SQL lives in storage/)."""

from __future__ import annotations

import time
from typing import Any

from storage.store import Store


async def insert_in_flight(store: Store, count: int, *, due_in: float, state: str = "running") -> None:
    """Insert `count` jobs of distinct users, `due_in` seconds from now (negative: overdue)."""
    now = time.time()
    for start in range(0, count, 500):
        ids = range(start, min(count, start + 500))
        async with store.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO users (id, balance, created_at) VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                [(n, now) for n in ids])
            await conn.executemany(
                "INSERT INTO jobs (user_id, model, provider, request_json, price, state, provider_job_id,"
                " next_run_at, created_at, updated_at) VALUES (?, 'kling', 'simulated', '{\"prompt\": \"x\"}', 0,"
                " ?, 'p', ?, ?, ?)",
                [(n, state, now + due_in + n * 0.01, now, now) for n in ids])


async def naive_due_scan(store: Store) -> list[Any]:
    """What a naive poller does each tick: read every in-flight row (the benchmark's baseline)."""
    rows = await store.db.fetchall("SELECT * FROM jobs WHERE state IN ('accepted', 'submitted', 'running')")
    now = time.time()
    return [row for row in rows if row["next_run_at"] <= now]
