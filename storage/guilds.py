"""Guild managers' settings, one row per guild, and the append-only audit of every change.

A change is computed from the current row inside the same transaction that writes it (and, on
PostgreSQL, with the row locked), so two managers editing at once cannot lose each other's edit,
and the audit's "old" value is the value that was really replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from storage.database import Database, Tx
from storage.models import GuildSettings, SettingsChange

SETTING_NAMES = ("allowed_channels", "sora_roles", "member_daily_cap", "member_concurrency")


def _from_row(row: Any) -> GuildSettings:
    return GuildSettings(
        guild_id=int(row["guild_id"]),
        allowed_channels=frozenset(int(i) for i in json.loads(row["allowed_channels"])),
        sora_roles=frozenset(int(i) for i in json.loads(row["sora_roles"])),
        member_daily_cap=None if row["member_daily_cap"] is None else int(row["member_daily_cap"]),
        member_concurrency=None if row["member_concurrency"] is None else int(row["member_concurrency"]),
    )


def _stored(value: object) -> str | None:
    """How a setting is written to its column and to the audit (id sets as sorted JSON lists)."""
    if value is None:
        return None
    if isinstance(value, frozenset):
        return json.dumps(sorted(value))
    return str(value)


async def read(conn: Tx, guild_id: int, *, lock: bool = False) -> GuildSettings:
    """The guild's settings inside the caller's transaction (defaults when none were ever set)."""
    row = await conn.fetchone("SELECT * FROM guild_settings WHERE guild_id = ?" + (" FOR UPDATE" if lock else ""),
                              (guild_id,))
    return _from_row(row) if row is not None else GuildSettings(guild_id=guild_id)


class GuildSettingsStore:
    """Reads and audited writes of `guild_settings`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, guild_id: int) -> GuildSettings:
        row = await self.db.fetchone("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return _from_row(row) if row is not None else GuildSettings(guild_id=guild_id)

    async def update(self, guild_id: int, change: Callable[[GuildSettings], GuildSettings], *, actor_id: int,
                     now: float | None = None) -> tuple[GuildSettings, list[SettingsChange]]:
        """Apply `change` to the current settings; write them and one audit row per changed setting.

        Returns the new settings and the audit rows written (none when nothing changed). `change` may
        raise to refuse; nothing is written then.
        """
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            postgres = self.db.dialect == "postgres"
            if postgres:  # lock the row (created if missing) so concurrent edits serialize
                await conn.execute(
                    "INSERT INTO guild_settings (guild_id, updated_by, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (guild_id) DO NOTHING", (guild_id, actor_id, now))
            old = await read(conn, guild_id, lock=postgres)
            new = replace(change(old), guild_id=guild_id)
            changed = [f.name for f in fields(GuildSettings)
                       if f.name in SETTING_NAMES and getattr(old, f.name) != getattr(new, f.name)]
            if not changed:
                return old, []
            values = [json.dumps(sorted(new.allowed_channels)), json.dumps(sorted(new.sora_roles)),
                      new.member_daily_cap, new.member_concurrency]
            await conn.execute(
                f"INSERT INTO guild_settings (guild_id, {', '.join(SETTING_NAMES)}, updated_by, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
                + ", ".join(f"{name} = excluded.{name}" for name in (*SETTING_NAMES, "updated_by", "updated_at")),
                (guild_id, *values, actor_id, now),
            )
            written = []
            for name in changed:
                row = await conn.fetchone(
                    "INSERT INTO guild_settings_audit (guild_id, actor_id, setting, old_value, new_value, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (guild_id, actor_id, name, _stored(getattr(old, name)), _stored(getattr(new, name)), now),
                )
                written.append(SettingsChange(id=int(row[0]), guild_id=guild_id, actor_id=actor_id, setting=name,
                                              old_value=_stored(getattr(old, name)),
                                              new_value=_stored(getattr(new, name)), created_at=now))
            return new, written

    async def history(self, guild_id: int, *, limit: int = 20) -> list[SettingsChange]:
        """The guild's most recent audited changes, newest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM guild_settings_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit))
        return [SettingsChange(id=int(r["id"]), guild_id=int(r["guild_id"]), actor_id=int(r["actor_id"]),
                               setting=r["setting"], old_value=r["old_value"], new_value=r["new_value"],
                               created_at=float(r["created_at"])) for r in rows]
