"""The append-only credit ledger; a user's balance is the sum of their entries.

`users.balance` caches that sum and is only ever changed in the same transaction as the entry
that moves it. Every entry has an idempotency key (UNIQUE), so a retried grant, capture or refund
applies once: the job's capture and refund share one `settle:` key, which makes "reserve matched by
exactly one capture or refund" a database constraint rather than a hope.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from storage.database import Database, Tx
from storage.models import CreditPolicy, LedgerEntry, LedgerKind


def utc_day(now: float) -> str:
    """The UTC calendar day of a timestamp; daily grants are keyed by it."""
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")


def utc_day_start(now: float) -> float:
    """Midnight UTC of the timestamp's day; daily caps count from it."""
    return datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def append(
    conn: Tx,
    *,
    user_id: int,
    kind: LedgerKind,
    amount: int,
    key: str,
    now: float,
    job_id: int | None = None,
    actor_id: int | None = None,
    reason: str | None = None,
) -> bool:
    """Add one entry inside the caller's transaction; False when the key was already used."""
    inserted = await conn.execute(
        "INSERT INTO ledger (user_id, kind, amount, job_id, idempotency_key, actor_id, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        (user_id, kind.value, amount, job_id, key, actor_id, reason, now),
    )
    if inserted == 0:
        return False
    if amount:
        await conn.execute("UPDATE users SET balance = balance + ? WHERE id = ?", (amount, user_id))
    return True


async def ensure_user(conn: Tx, user_id: int, policy: CreditPolicy, now: float, *, lock: bool = False) -> int:
    """Create the user with the start balance and apply today's grant, once; return the balance.

    Accounts younger than `policy.new_account_min_days` (by the creation time in their Discord id) get
    neither until they are old enough.

    With `lock` (PostgreSQL) the user's row stays locked until the transaction ends, so reservations
    of one user from several processes happen one after another.
    """
    await conn.execute("INSERT INTO users (id, balance, created_at) VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                       (user_id, now))
    if lock:
        await conn.fetchone("SELECT id FROM users WHERE id = ? FOR UPDATE", (user_id,))
    # A too-young account (alt-account farming) gets no grant yet; the grants' keys are idempotent, so
    # the welcome and that day's grant arrive on its first visit once it is old enough.
    if now >= policy.grants_from(user_id):
        await _grants(conn, user_id, policy, now)
    row = await conn.fetchone("SELECT balance FROM users WHERE id = ?", (user_id,))
    assert row is not None
    return int(row["balance"])


async def _grants(conn: Tx, user_id: int, policy: CreditPolicy, now: float) -> None:
    """The welcome grant (once ever) and today's grant (once a UTC day)."""
    if policy.start_balance:
        await append(conn, user_id=user_id, kind=LedgerKind.GRANT, amount=policy.start_balance,
                     key=f"start:{user_id}", now=now, reason="welcome credits")
    daily = policy.daily_grant_for(user_id)
    if daily:
        day = utc_day(now)
        await append(conn, user_id=user_id, kind=LedgerKind.DAILY, amount=daily,
                     key=f"daily:{user_id}:{day}", now=now, reason=f"daily grant {day}")


class Ledger:
    """Credit queries and admin actions."""

    def __init__(self, db: Database, policy: CreditPolicy) -> None:
        self.db = db
        self.policy = policy

    async def balance(self, user_id: int, *, now: float | None = None) -> int:
        """The spendable balance, after applying any grant that is due."""
        async with self.db.transaction() as conn:
            return await ensure_user(conn, user_id, self.policy, time.time() if now is None else now)

    async def adjust(
        self, user_id: int, amount: int, *, actor_id: int, key: str, reason: str | None = None,
        now: float | None = None,
    ) -> tuple[bool, int]:
        """Admin grant (positive) or correction (negative, never below zero); (applied, balance)."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            balance = await ensure_user(conn, user_id, self.policy, now, lock=self.db.dialect == "postgres")
            if balance + amount < 0:
                amount = -balance
            applied = await append(conn, user_id=user_id, kind=LedgerKind.ADJUST, amount=amount, key=key,
                                   now=now, actor_id=actor_id, reason=reason)
            balance = await ensure_user(conn, user_id, self.policy, now)
        return applied, balance

    async def credit_purchase(self, user_id: int, amount: int, *, key: str, refund_key: str, reason: str,
                              now: float | None = None) -> bool:
        """Credit a purchase once per `key`; never after its refund (`refund_key`) was recorded. True if applied."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            await ensure_user(conn, user_id, self.policy, now, lock=self.db.dialect == "postgres")
            if await conn.fetchone("SELECT id FROM ledger WHERE idempotency_key = ?", (refund_key,)):
                return False
            return await append(conn, user_id=user_id, kind=LedgerKind.ADJUST, amount=amount, key=key, now=now,
                                reason=reason)

    async def take_back_purchase(self, user_id: int, *, grant_key: str, key: str, shortfall_key: str,
                                 reason: str, now: float | None = None) -> tuple[int, int] | None:
        """Undo a refunded purchase's credit, never below zero; (taken, shortfall), or None if already done.

        What the user has already spent cannot be taken: it is recorded as a zero-amount entry naming the
        unrecovered credits (`shortfall_key`). A refund of a purchase never credited records a zero entry under
        `key`, so a late ENTITLEMENT_CREATE for it credits nothing.
        """
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            balance = await ensure_user(conn, user_id, self.policy, now, lock=self.db.dialect == "postgres")
            granted = await conn.fetchone("SELECT amount FROM ledger WHERE idempotency_key = ?", (grant_key,))
            owed = int(granted["amount"]) if granted else 0
            taken = min(owed, max(balance, 0))
            if not await append(conn, user_id=user_id, kind=LedgerKind.ADJUST, amount=-taken, key=key, now=now,
                                reason=reason):
                return None
            if owed > taken:
                await append(conn, user_id=user_id, kind=LedgerKind.ADJUST, amount=0, key=shortfall_key, now=now,
                             reason=f"{reason}: {owed - taken} credits already spent, not recovered")
        return taken, owed - taken

    async def history(self, user_id: int, *, limit: int = 10) -> list[LedgerEntry]:
        rows = await self.db.fetchall(
            "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
        )
        return [LedgerEntry.from_row(row) for row in rows]

    async def entries_for_job(self, job_id: int) -> list[LedgerEntry]:
        rows = await self.db.fetchall("SELECT * FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
        return [LedgerEntry.from_row(row) for row in rows]

    async def granted_today(self, user_id: int, *, now: float | None = None) -> int:
        day = utc_day(time.time() if now is None else now)
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE idempotency_key = ?", (f"daily:{user_id}:{day}",)
        )
        return int(row[0]) if row else 0

    async def totals_by_kind(self) -> dict[str, int]:
        """Sum of amounts per entry kind, admin adjustments split into `adjust_up` and `adjust_down`.

        The ledger is append-only, so each total only grows in magnitude: the metrics expose them as counters.
        """
        rows = await self.db.fetchall(
            "SELECT CASE WHEN kind = 'adjust' AND amount < 0 THEN 'adjust_down' WHEN kind = 'adjust' THEN 'adjust_up'"
            " ELSE kind END AS k, COALESCE(SUM(amount), 0) FROM ledger GROUP BY k")
        return {str(row[0]): int(row[1]) for row in rows}

    async def audit(self) -> dict[str, int]:
        """Check the invariants; used by tests and the ops check. Returns counts of violations."""
        mismatched = await self.db.fetchone(
            "SELECT COUNT(*) FROM users u WHERE u.balance != "
            "(SELECT COALESCE(SUM(amount), 0) FROM ledger l WHERE l.user_id = u.id)"
        )
        negative = await self.db.fetchone("SELECT COUNT(*) FROM users WHERE balance < 0")
        unmatched = await self.db.fetchone(
            "SELECT COUNT(*) FROM jobs j WHERE j.price > 0 AND j.state IN ('failed', 'canceled', 'downloaded',"
            " 'delivered', 'undelivered') AND (SELECT COUNT(*) FROM ledger l WHERE l.job_id = j.id"
            " AND l.kind IN ('capture', 'refund')) != 1"
        )
        double = await self.db.fetchone(
            "SELECT COUNT(*) FROM (SELECT job_id FROM ledger WHERE kind IN ('reserve', 'capture', 'refund')"
            " AND job_id IS NOT NULL GROUP BY job_id, kind HAVING COUNT(*) > 1) AS doubled"
        )
        return {
            "balance_mismatch": int(mismatched[0]) if mismatched else 0,
            "negative_balance": int(negative[0]) if negative else 0,
            "unsettled_finished_jobs": int(unmatched[0]) if unmatched else 0,
            "duplicate_entries": int(double[0]) if double else 0,
        }
