"""The migration that drops dead columns keeps every row, in both dialects."""

from __future__ import annotations

from pathlib import Path

import pytest

import storage.database
import storage.postgres
from storage import CreditPolicy, Store

DROPS = "drop_dead_columns"


def before_drop(dialect: str) -> list[tuple[int, str, str]]:
    """The bundled migrations up to (not including) the one that drops the columns; no version hard-coded."""
    migrations = storage.database.load_migrations(dialect)
    cut = next(index for index, (_, name, _) in enumerate(migrations) if DROPS in name)
    return migrations[:cut]


async def test_dropping_the_dead_columns_keeps_jobs_and_compares(location: str | Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dialect = "sqlite" if isinstance(location, Path) else "postgres"
    old = before_drop(dialect)
    monkeypatch.setattr(storage.database, "load_migrations", lambda d="sqlite": old)
    monkeypatch.setattr(storage.postgres, "load_migrations", lambda d="postgres": old)
    store = await Store.open(location, CreditPolicy())
    try:
        async with store.db.transaction() as conn:
            await conn.execute("INSERT INTO users (id, balance, created_at) VALUES (7, 0, 1.0)")
            await conn.execute("INSERT INTO compares (id, user_id, blind, slot_a, message_id, created_at)"
                               " VALUES (3, 7, 1, 'kling', 99, 1.0)")
            await conn.execute(
                "INSERT INTO jobs (id, user_id, model, provider, request_json, state, delivery_nonce,"
                " response_message_id, compare_id, created_at, updated_at)"
                " VALUES (5, 7, 'kling', 'simulated', '{\"prompt\": \"x\"}', 'accepted', 'n', 42, 3, 1.0, 1.0)")
    finally:
        await store.close()
    monkeypatch.undo()
    store = await Store.open(location, CreditPolicy())
    try:
        job = await store.jobs.get(5)
        compare = await store.jobs.get_compare(3)
        row = await store.db.fetchone("SELECT * FROM jobs WHERE id = 5")
        compare_row = await store.db.fetchone("SELECT * FROM compares WHERE id = 3")
    finally:
        await store.close()
    assert job is not None and job.compare_id == 3 and job.model == "kling"
    assert compare is not None and compare.blind and compare.slot_a == "kling"
    job_columns, compare_columns = set(row.keys()), set(compare_row.keys())  # sqlite3.Row's `in` looks at values
    assert "model" in job_columns and not {"delivery_nonce", "response_message_id"} & job_columns
    assert "slot_a" in compare_columns and "message_id" not in compare_columns
