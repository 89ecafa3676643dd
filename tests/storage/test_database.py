"""Migrations and connection settings of the SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import Store
from storage.database import MigrationError, SQLiteDatabase as Database, load_migrations


async def test_migrations_from_empty_reach_latest_version(db_path: Path) -> None:
    """A new file gets every migration and records the latest version."""
    db = Database(db_path)
    await db.connect()
    latest = load_migrations()[-1][0]
    assert await db.schema_version() == latest
    tables = {row[0] for row in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "jobs", "ledger", "prices", "user_keys", "audit_log"} <= tables
    await db.close()


async def test_rerunning_migrations_is_a_no_op(db_path: Path) -> None:
    """Opening an up-to-date file twice applies nothing and keeps the data."""
    store = await Store.open(db_path)
    await store.ledger.balance(7)
    version = await store.db.schema_version()
    assert await store.db.migrate() == version
    await store.close()
    again = await Store.open(db_path)
    assert await again.db.schema_version() == version
    assert await again.ledger.balance(7) == 120
    await again.close()


async def test_wal_and_foreign_keys_are_on(db_path: Path) -> None:
    db = Database(db_path)
    await db.connect()
    mode = await db.fetchone("PRAGMA journal_mode")
    assert mode is not None and mode[0] == "wal"
    fk = await db.fetchone("PRAGMA foreign_keys")
    assert fk is not None and fk[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO ledger (user_id, kind, amount, idempotency_key, created_at)"
                " VALUES (424242, 'grant', 1, 'k', 0)"
            )
    await db.close()


async def test_newer_schema_refuses_to_start(db_path: Path) -> None:
    """A file written by a newer bot is not silently used by older code."""
    db = Database(db_path)
    await db.connect()
    await db.writer.execute("PRAGMA user_version = 999")
    await db.close()
    with pytest.raises(MigrationError, match="newer than this code"):
        await Database(db_path).connect()


async def test_failed_transaction_rolls_back(db_path: Path) -> None:
    db = Database(db_path)
    await db.connect()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO users (id, balance, created_at) VALUES (1, 0, 0)")
            raise RuntimeError("boom")
    assert await db.fetchone("SELECT * FROM users WHERE id = 1") is None
    await db.close()


def test_bundled_migrations_are_numbered_without_gaps() -> None:
    versions = [version for version, _, _ in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_new_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    """The file holds encrypted keys, tokens and every user's history: 0600 even under a permissive umask."""
    import os
    import stat

    path = tmp_path / "fresh" / "bot.sqlite3"
    old = os.umask(0o022)
    try:
        store = await Store.open(path)
        await store.ledger.balance(7)  # a write, so the WAL and SHM files exist
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        await store.close()
    finally:
        os.umask(old)
    assert {"bot.sqlite3", "bot.sqlite3-wal", "bot.sqlite3-shm"} <= set(modes)
    assert all(mode == 0o600 for mode in modes.values()), modes


async def test_an_existing_database_readable_by_others_is_warned_about(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="storage.database"):
        store = await Store.open(path)
        await store.close()
    assert any("644" in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
