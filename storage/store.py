"""The storage facade the bot holds: one object, opened once in `setup_hook`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from storage.database import Database, open_database
from storage.guilds import GuildSettingsStore
from storage.jobs import JobStore
from storage.ledger import Ledger
from storage.models import CreditPolicy
from storage.render_times import RenderTimeStore


class PriceStore:
    """Admin overrides of the catalogue's prices, by price key (the bot checks keys against its catalogue)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Read on every command, changed only by admins: cached briefly so other processes sharing
        # the database see a change within CACHE_SECONDS.
        self._cache: tuple[float, dict[str, int]] | None = None

    CACHE_SECONDS = 30.0

    async def overrides(self) -> dict[str, int]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > self.CACHE_SECONDS:
            rows = await self.db.fetchall("SELECT key, credits FROM prices")
            self._cache = (now, {row["key"]: int(row["credits"]) for row in rows})
        return dict(self._cache[1])

    async def set(self, key: str, credits: int, *, actor_id: int, now: float | None = None) -> None:
        if not key or len(key) > 100:
            raise ValueError("a price key is 1-100 characters")
        if credits < 0:
            raise ValueError("a price cannot be negative")
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO prices (key, credits, updated_by, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET credits = excluded.credits, updated_by = excluded.updated_by,"
                " updated_at = excluded.updated_at",
                (key, credits, actor_id, now),
            )
            await conn.execute(
                "INSERT INTO audit_log (actor_id, action, detail, created_at) VALUES (?, 'set_price', ?, ?)",
                (actor_id, json.dumps({"key": key, "credits": credits}), now),
            )
        self._cache = None


class KeyStore:
    """Users' own provider keys, as ciphertext only (the caller encrypts)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, user_id: int, provider: str, ciphertext: bytes, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            await conn.execute("INSERT INTO users (id, balance, created_at) VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                               (user_id, now))
            await conn.execute(
                "INSERT INTO user_keys (user_id, provider, ciphertext, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, provider) DO UPDATE SET ciphertext = excluded.ciphertext,"
                " created_at = excluded.created_at",
                (user_id, provider, ciphertext, now),
            )

    async def get(self, user_id: int, provider: str) -> tuple[bytes, float] | None:
        row = await self.db.fetchone(
            "SELECT ciphertext, created_at FROM user_keys WHERE user_id = ? AND provider = ?", (user_id, provider)
        )
        return (bytes(row["ciphertext"]), float(row["created_at"])) if row else None

    async def delete(self, user_id: int, provider: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute(
                "DELETE FROM user_keys WHERE user_id = ? AND provider = ?", (user_id, provider)
            ) > 0


class Store:
    """Everything persistent: jobs, ledger, prices, keys, guild settings, observed render times."""

    def __init__(self, path: Path | str, policy: CreditPolicy | None = None) -> None:
        self.policy = policy or CreditPolicy()
        self.db: Database = open_database(path)
        self.jobs = JobStore(self.db, self.policy)
        self.ledger = Ledger(self.db, self.policy)
        self.prices = PriceStore(self.db)
        self.keys = KeyStore(self.db)
        self.guilds = GuildSettingsStore(self.db)
        self.render_times = RenderTimeStore(self.db)

    @classmethod
    async def open(cls, path: Path | str, policy: CreditPolicy | None = None) -> Store:
        store = cls(path, policy)
        await store.db.connect()
        return store

    async def on_new_jobs(self, callback: Callable[[], None]) -> bool:
        """Have other processes' new jobs wake us (PostgreSQL LISTEN); False where that cannot work."""
        listen = getattr(self.db, "listen", None)
        if listen is None:
            return False
        await listen("bot_jobs", callback)
        return True

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query (the health check)."""
        await self.db.fetchone("SELECT 1")

    async def close(self) -> None:
        await self.db.close()
