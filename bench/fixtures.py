"""Bulk data for the benchmarks: only they use it, so it is not part of the shipped `storage` package."""

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


async def insert_running(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert running jobs with real requests (user, model, provider, request_json, provider_job_id,
    submitted_at, next_run_at, guild_id, channel_id): a bot's in-flight state, for load benchmarks."""
    now = time.time()
    for start in range(0, len(rows), 500):
        batch = rows[start:start + 500]
        async with store.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO users (id, balance, created_at) VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                [(row["user_id"], now) for row in batch])
            await conn.executemany(
                "INSERT INTO jobs (user_id, guild_id, channel_id, model, provider, request_json, price, state,"
                " provider_job_id, submitted_at, next_run_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 0, 'running', ?, ?, ?, ?, ?)",
                [(row["user_id"], row["guild_id"], row["channel_id"], row["model"], row["provider"],
                  row["request_json"], row["provider_job_id"], row["submitted_at"], row["next_run_at"],
                  row["submitted_at"], row["submitted_at"]) for row in batch])


async def plain_next_due(store: Store) -> float | None:
    """The fair baseline: the plain SQL a competent peer would write, without our partial index."""
    row = await store.db.fetchone(
        "SELECT MIN(next_run_at) FROM jobs NOT INDEXED WHERE state IN ('accepted', 'submitted', 'running')"
        " AND lease_owner IS NULL")
    return row[0] if row else None


async def plain_claim(store: Store, owner: str, *, limit: int = 16) -> int:
    """The same peer's claim: one UPDATE over the unindexed table (SQLite)."""
    now = time.time()
    async with store.db.transaction() as conn:
        return await conn.execute(
            "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id IN (SELECT id FROM jobs NOT INDEXED"
            " WHERE state IN ('accepted', 'submitted', 'running') AND next_run_at <= ? AND lease_owner IS NULL"
            " ORDER BY next_run_at LIMIT ?)", (owner, now + 60, now, limit))
