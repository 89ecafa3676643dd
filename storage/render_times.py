"""Observed render times (model seconds) per provider, model, duration and resolution, and when
each provider's webhooks last arrived, and
when each provider was last swept (bot/sweep.py).

Why persisted: the poller's schedule (bot/schedule.py) learns where renders really finish; a
restart should not send it back to the priors. Only the newest `keep` rows per key are kept.
Webhook health is shared the same way: with BOT_ROLE=gateway receiving the callbacks and separate
workers polling, only the database tells a worker that its jobs will be nudged.
"""

from __future__ import annotations

import time

from storage.database import Database

Key = tuple[str, str, float, str]  # provider, model, duration, resolution


class RenderTimeStore:
    """Reads and writes of `render_times`."""

    def __init__(self, db: Database, *, keep: int = 200) -> None:
        self.db = db
        self.keep = keep

    async def add(self, key: Key, low: float, high: float, *, now: float | None = None) -> None:
        """Record one finished render that was still running at `low` and done by `high` seconds."""
        now = time.time() if now is None else now
        provider, model, duration, resolution = key
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO render_times (provider, model, duration, resolution, low_seconds, high_seconds,"
                " observed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (provider, model, float(duration), resolution, float(low), float(high), now),
            )
            await conn.execute(
                "DELETE FROM render_times WHERE provider = ? AND model = ? AND duration = ? AND resolution = ?"
                " AND id <= (SELECT id FROM render_times WHERE provider = ? AND model = ? AND duration = ?"
                " AND resolution = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (provider, model, float(duration), resolution) * 2 + (self.keep,),
            )

    async def recent(self, per_key: int, *, limit: int = 20_000) -> list[tuple[Key, float, float]]:
        """The newest `per_key` observations of every key, oldest first."""
        rows = await self.db.fetchall(
            "SELECT provider, model, duration, resolution, low_seconds, high_seconds FROM render_times"
            " ORDER BY id DESC LIMIT ?", (limit,),
        )
        kept: dict[Key, list[tuple[float, float]]] = {}
        for row in rows:
            key = (str(row[0]), str(row[1]), float(row[2]), str(row[3]))
            bucket = kept.setdefault(key, [])
            if len(bucket) < per_key:
                bucket.append((float(row[4]), float(row[5])))
        return [(key, low, high) for key, bucket in kept.items() for low, high in reversed(bucket)]

    async def webhook_seen(self, provider: str, *, now: float | None = None) -> None:
        """Record that a verified webhook of `provider` arrived (never moves the time backwards)."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO webhook_health (provider, last_seen_at) VALUES (?, ?) ON CONFLICT (provider) DO UPDATE"
                " SET last_seen_at = CASE WHEN excluded.last_seen_at > webhook_health.last_seen_at"
                " THEN excluded.last_seen_at ELSE webhook_health.last_seen_at END",
                (provider, float(now)),
            )

    async def webhooks_seen(self) -> dict[str, float]:
        """provider -> when its last verified webhook arrived."""
        rows = await self.db.fetchall("SELECT provider, last_seen_at FROM webhook_health")
        return {str(row[0]): float(row[1]) for row in rows}

    async def claim_sweep(self, provider: str, *, every: float, now: float | None = None) -> bool:
        """Whether this process may sweep `provider` now: true for exactly one caller per `every` seconds.

        The claim moves `swept_at` forward in one statement, so concurrent workers cannot both win it.
        """
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            await conn.execute("INSERT INTO provider_sweeps (provider, swept_at) VALUES (?, ?)"
                               " ON CONFLICT (provider) DO NOTHING", (provider, float(now) - float(every)))
            changed = await conn.execute("UPDATE provider_sweeps SET swept_at = ? WHERE provider = ? AND swept_at <= ?",
                                         (float(now), provider, float(now) - float(every)))
        return bool(changed)
