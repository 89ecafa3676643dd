"""Database connections, migrations and transactions, for SQLite (default) and PostgreSQL.

All SQL in storage/ is written once with `?` placeholders and portable syntax; the few places
where the engines must differ (locking, claiming with SKIP LOCKED) ask `db.dialect`.

SQLite: one writer connection (serialised by a lock, `BEGIN IMMEDIATE` so other processes wait on
the file lock rather than failing mid-transaction) and one reader; WAL lets readers see the last
committed state without waiting for writers. PostgreSQL: an asyncpg pool; row locks
(`FOR UPDATE`, `SKIP LOCKED`) keep several processes from stepping on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

log = logging.getLogger(__name__)
MIN_SQLITE = (3, 35, 0)  # ALTER TABLE … DROP COLUMN (the drop_dead_columns migration)
MIGRATION_NAME = re.compile(r"^V(\d+)__[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


def load_migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """Return (version, name, sql) for every bundled migration of a dialect, checking there are no gaps."""
    folder = resources.files("storage.migrations")
    if dialect == "postgres":
        folder = folder.joinpath("postgres")
    found = []
    for entry in folder.iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise MigrationError(f"migration {name} breaks the sequence: expected V{expected}")
    return found


class Tx(Protocol):
    """A transaction (or plain connection) with one small API over both engines."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class Database(Protocol):
    dialect: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def migrate(self) -> int: ...

    async def schema_version(self) -> int: ...

    def transaction(self) -> Any: ...

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any: ...

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]: ...


class SQLiteTx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.conn.execute(sql, tuple(params))
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, [tuple(row) for row in rows])

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self.conn.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self.conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())


class SQLiteDatabase:
    """The bot's SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def connect(self) -> None:
        """Open the file (creating its folder, and the file owner-only), apply pending migrations."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise MigrationError(f"SQLite {sqlite3.sqlite_version} is too old: the bot needs 3.35 or newer "
                                 "(or use DATABASE_URL with PostgreSQL)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            # Created 0600 before SQLite sees it: it holds encrypted keys, tokens and every user's history,
            # and SQLite gives its -wal and -shm files the same mode as the database file.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s has mode %o: other users can read every job and encrypted key; run `chmod 600` on it",
                        self.path, mode)
        self._writer = await self._open()
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise
        self._reader = await self._open()

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("database is not connected")
        return self._writer

    async def schema_version(self) -> int:
        async with self.writer.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> int:
        """Apply every pending migration in one transaction; return the new version."""
        migrations = load_migrations("sqlite")
        latest = migrations[-1][0] if migrations else 0
        async with self._write_lock:
            current = await self.schema_version()
            if current > latest:
                raise MigrationError(
                    f"{self.path} has schema V{current}, newer than this code (V{latest}); upgrade the bot"
                )
            pending = [sql for version, _, sql in migrations if version > current]
            if not pending:
                return current
            script = "BEGIN IMMEDIATE;\n" + "\n".join(pending) + f"\nPRAGMA user_version = {latest};\nCOMMIT;"
            # A migration may rebuild a table (SQLite cannot alter a CHECK): foreign keys are off while the
            # script runs (the pragma is a no-op inside a transaction) and checked before they are back on.
            await self.writer.execute("PRAGMA foreign_keys = OFF")
            try:
                await self.writer.executescript(script)
                async with self.writer.execute("PRAGMA foreign_key_check") as cursor:
                    broken = await cursor.fetchall()
                if broken:
                    raise MigrationError(f"{self.path}: migration left {len(broken)} broken foreign keys")
            except Exception:
                if self.writer.in_transaction:
                    await self.writer.rollback()
                raise
            finally:
                await self.writer.execute("PRAGMA foreign_keys = ON")
        return latest

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTx]:
        """Run a write transaction; commits on success, rolls back on any exception."""
        async with self._write_lock:
            conn = self.writer
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteTx(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await SQLiteTx(self._reader or self.writer).fetchone(sql, tuple(params))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await SQLiteTx(self._reader or self.writer).fetchall(sql, tuple(params))


def open_database(location: Path | str) -> Database:
    """`postgresql://…` URLs go to PostgreSQL, anything else is a SQLite file path."""
    if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresDatabase

        return PostgresDatabase(location)
    return SQLiteDatabase(location)


def numbered(sql: str) -> str:
    """`?` placeholders to PostgreSQL's `$1, $2, …` (our SQL has no literal question marks)."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)
