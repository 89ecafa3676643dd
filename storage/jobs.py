"""Jobs: creation with credit reservation, leases for workers, and the state machine.

A job is created, paid for and counted against the user's concurrency cap in one `BEGIN
IMMEDIATE` transaction, so two commands racing can neither overdraw nor exceed the cap. Workers
*claim* due jobs with a lease instead of removing them: a worker that dies simply lets its lease
run out, and the job is claimed again (at-least-once; delivery uses Discord's nonce to stay
exactly-once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from storage import guilds, ledger
from storage.database import Database, Tx
from storage.models import (
    ACTIVE,
    JOB_COLUMNS,
    MUTABLE_JOB_COLUMNS,
    REFUNDING,
    TRANSITIONS,
    Compare,
    ComparePairing,
    ConcurrencyLimit,
    CreditPolicy,
    DailySpendLimit,
    IllegalTransition,
    InsufficientCredits,
    Job,
    JobNotFound,
    JobState,
    LeaseLost,
    LedgerKind,
    MemberDailyCap,
    NewJob,
    OutboxRow,
    SweepTarget,
)

log = logging.getLogger(__name__)

_ACTIVE_SQL = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE))
_INSERT_COLUMNS = (
    "user_id",
    "guild_id",
    "channel_id",
    "is_dm",
    "guild_installed",
    "interaction_id",
    "application_id",
    "interaction_token",
    "token_expires_at",
    "upload_limit",
    "reference_url",
    "model",
    "provider",
    "provider_model",
    "request_json",
    "price",
    "uses_own_key",
    "parent_job_id",
)


async def _row(conn: Tx, job_id: int, *, lock: bool = False) -> Job:
    row = await conn.fetchone("SELECT * FROM jobs WHERE id = ?" + (" FOR UPDATE" if lock else ""), (job_id,))
    if row is None:
        raise JobNotFound(job_id)
    return Job.from_row(row)


# When a leased row becomes claimable: its run time, or later its lease's expiry. Written exactly
# as the V8 index jobs_leased_due / outbox_leased_due, so both engines read it off that index.
LEASED_DUE = "(CASE WHEN lease_expires_at > next_run_at THEN lease_expires_at ELSE next_run_at END)"
_SPEND_LOCK = 0x5BE11D  # PostgreSQL advisory lock key guarding DAILY_SPEND_LIMIT


async def _spent_since(conn: Tx, since: float, *, user_id: int | None = None, guild_id: int | None = None) -> int:
    """Credits held by jobs created since `since` (reserved minus refunded), by one member in one guild or by all."""
    where = "j.created_at >= ?"
    params: list[Any] = [since]
    if user_id is not None:
        where += " AND j.user_id = ? AND j.guild_id = ?"
        params += [user_id, guild_id]
    row = await conn.fetchone(
        f"SELECT COALESCE(SUM(l.amount), 0) FROM ledger l JOIN jobs j ON j.id = l.job_id WHERE {where}", params)
    return -int(row[0]) if row else 0


def _plain(value: Any) -> Any:
    """Flags are stored as 0/1 integers on both engines (PostgreSQL will not take a bool there)."""
    return int(value) if isinstance(value, bool) else value


class JobStore:
    """All reads and writes of `jobs`."""

    def __init__(self, db: Database, policy: CreditPolicy) -> None:
        self.db = db
        self.policy = policy
        self._watchers: list[Callable[[Job | None, Job], None]] = []

    def watch(self, callback: Callable[[Job | None, Job], None]) -> None:
        """Call `callback(before, after)` after every committed create (`before` None) or update.

        One place sees every state change, whoever makes it (poller, delivery, commands): the metrics
        count outcomes here. A failing watcher is logged and never undoes the change.
        """
        self._watchers.append(callback)

    def _notify(self, before: Job | None, after: Job) -> None:
        for callback in self._watchers:
            try:
                callback(before, after)
            except Exception:
                log.exception("job watcher failed")

    async def create(
        self, new_jobs: Sequence[NewJob], *, now: float | None = None, compare: ComparePairing | None = None
    ) -> list[Job]:
        jobs, _ = await self.create_with_balance(new_jobs, now=now, compare=compare)
        return jobs

    async def create_with_balance(
        self, new_jobs: Sequence[NewJob], *, now: float | None = None, compare: ComparePairing | None = None,
        rules_guild_id: int | None = None,
    ) -> tuple[list[Job], int]:
        """Reserve credits and store the jobs atomically; raise if the user can't afford or run them.

        With `compare` the jobs are also tied together as one /compare pair. With
        `rules_guild_id` that guild's per-member caps apply too. Every cap (the user's, the guild's,
        DAILY_SPEND_LIMIT) is checked in this transaction, so racing commands cannot exceed one.
        """
        if not new_jobs:
            return [], 0
        now = time.time() if now is None else now
        user_ids = {job.user_id for job in new_jobs}
        if len(user_ids) != 1:
            raise ValueError("jobs created together belong to one user")
        user_id = user_ids.pop()
        total = sum(job.price for job in new_jobs)
        async with self.db.transaction() as conn:
            balance = await ledger.ensure_user(conn, user_id, self.policy, now, lock=self.db.dialect == "postgres")
            row = await conn.fetchone(
                f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ({_ACTIVE_SQL})", (user_id,)
            )
            active = int(row[0]) if row else 0
            if active + len(new_jobs) > self.policy.max_concurrent_jobs:
                raise ConcurrencyLimit(active, self.policy.max_concurrent_jobs)
            rules = await guilds.read(conn, rules_guild_id) if rules_guild_id is not None else None
            if rules is not None and rules.member_concurrency is not None:
                row = await conn.fetchone(
                    f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND guild_id = ? AND state IN ({_ACTIVE_SQL})",
                    (user_id, rules_guild_id))
                here = int(row[0]) if row else 0
                if here + len(new_jobs) > rules.member_concurrency:
                    raise ConcurrencyLimit(here, rules.member_concurrency, guild=True)
            if total > balance:
                grants_from = self.policy.grants_from(user_id)
                raise InsufficientCredits(balance, total, grants_from if now < grants_from else None)
            if total and rules is not None and rules.member_daily_cap is not None:
                spent = await _spent_since(conn, ledger.utc_day_start(now), user_id=user_id, guild_id=rules_guild_id)
                if spent + total > rules.member_daily_cap:
                    raise MemberDailyCap(spent, total, rules.member_daily_cap)
            if total and self.policy.daily_spend_limit is not None:
                if self.db.dialect == "postgres":  # one global total: reservations of all users take turns
                    await conn.execute("SELECT pg_advisory_xact_lock(?)", (_SPEND_LOCK,))
                spent = await _spent_since(conn, ledger.utc_day_start(now))
                if spent + total > self.policy.daily_spend_limit:
                    raise DailySpendLimit(spent, total, self.policy.daily_spend_limit)
            compare_id = None
            if compare is not None:
                inserted = await conn.fetchone(
                    "INSERT INTO compares (user_id, guild_id, blind, slot_a, created_at) VALUES (?, ?, ?, ?, ?)"
                    " RETURNING id",
                    (user_id, new_jobs[0].guild_id, int(compare.blind), compare.slot_a, now),
                )
                compare_id = int(inserted[0])
            created: list[int] = []
            placeholders = ", ".join("?" for _ in _INSERT_COLUMNS)
            for job in new_jobs:
                values = [_plain(getattr(job, column)) for column in _INSERT_COLUMNS]
                inserted = await conn.fetchone(
                    f"INSERT INTO jobs ({', '.join(_INSERT_COLUMNS)}, compare_id, state, next_run_at, created_at,"
                    " updated_at)"
                    f" VALUES ({placeholders}, ?, 'accepted', ?, ?, ?) RETURNING id",
                    (*values, compare_id, now, now, now),
                )
                job_id = int(inserted[0])
                created.append(job_id)
                if job.price:
                    await ledger.append(
                        conn,
                        user_id=user_id,
                        kind=LedgerKind.RESERVE,
                        amount=-job.price,
                        key=f"reserve:{job_id}",
                        job_id=job_id,
                        now=now,
                        reason=f"{job.model} job {job_id}",
                    )
            if self.db.dialect == "postgres":
                await conn.execute("NOTIFY bot_jobs")  # delivered on commit: wakes workers in other processes
            jobs = [await _row(conn, job_id) for job_id in created]
        for job in jobs:
            self._notify(None, job)
        return jobs, balance - total

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def for_user(self, user_id: int, *, limit: int = 10) -> list[Job]:
        """The user's active jobs first, then the most recent others."""
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE user_id = ? ORDER BY (state IN ({_ACTIVE_SQL})) DESC, id DESC LIMIT ?",
            (user_id, limit),
        )
        return [Job.from_row(row) for row in rows]

    async def active_count(self, user_id: int) -> int:
        row = await self.db.fetchone(
            f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ({_ACTIVE_SQL})", (user_id,)
        )
        return int(row[0]) if row else 0

    async def by_provider_job(self, provider: str, provider_job_id: str) -> Job | None:
        row = await self.db.fetchone(
            "SELECT * FROM jobs WHERE provider = ? AND provider_job_id = ?", (provider, provider_job_id)
        )
        return Job.from_row(row) if row else None

    async def sweep_targets(self) -> list[SweepTarget]:
        """Renders a list sweep can answer for: submitted or running, with a task id, on the operator's
        account (a job run with its user's own key is in that user's account). Only the columns a sweep
        needs: with 10,000 renders in flight this runs every few seconds."""
        rows = await self.db.fetchall(
            "SELECT id, provider, provider_job_id, state, progress, COALESCE(submitted_at, created_at) FROM jobs"
            " WHERE state IN (?, ?) AND provider_job_id IS NOT NULL AND uses_own_key = 0",
            (JobState.SUBMITTED.value, JobState.RUNNING.value))
        return [SweepTarget(int(row[0]), str(row[1]), str(row[2]), JobState(row[3]),
                            None if row[4] is None else int(row[4]), float(row[5])) for row in rows]

    async def swept(self, *, running: Sequence[int], due: Sequence[int], defer_until: float, now: float) -> None:
        """Apply a sweep: `running` renders were seen running at `now`, `due` ones need a look now.

        Only scheduling changes, never a transition (the runner's look makes those): a render seen
        running is not looked at before `defer_until` (the next sweeps answer for it), and `updated_at`
        becomes its last look, which the schedule learns render times from. Leased rows are skipped: a
        step is running on them and sets its own next look.
        """
        async with self.db.transaction() as conn:
            for chunk in _chunks(running):
                await conn.execute(
                    f"UPDATE jobs SET next_run_at = CASE WHEN next_run_at < ? THEN ? ELSE next_run_at END,"
                    f" updated_at = ? WHERE id IN ({', '.join('?' * len(chunk))}) AND state IN (?, ?)"
                    " AND next_run_at IS NOT NULL AND lease_owner IS NULL",
                    (defer_until, defer_until, now, *chunk, JobState.SUBMITTED.value, JobState.RUNNING.value))
            for chunk in _chunks(due):
                await conn.execute(
                    f"UPDATE jobs SET next_run_at = ? WHERE id IN ({', '.join('?' * len(chunk))}) AND state IN (?, ?)"
                    " AND next_run_at IS NOT NULL", (now, *chunk, JobState.SUBMITTED.value, JobState.RUNNING.value))

    async def next_due_at(self) -> float | None:
        """When the soonest job or outbox row becomes claimable (its run time, or its stale lease's expiry).

        Each part reads one row off its own partial index (V8): free rows by next_run_at, leased rows
        by the later of next_run_at and the lease's expiry. With 10,000 renders leased, a MIN over
        all due rows would walk or scan them on every tick.
        """
        times = []
        for sql in self.due_queries():
            row = await self.db.fetchone(sql)
            if row is not None and row[0] is not None:
                times.append(float(row[0]))
        return min(times) if times else None

    @staticmethod
    def due_queries() -> list[str]:
        """The queries next_due_at runs (public so a test can check each is index-backed)."""
        queries = []
        for table in ("jobs", "outbox"):
            queries.append(f"SELECT next_run_at FROM {table} WHERE next_run_at IS NOT NULL AND lease_owner IS NULL"
                           " ORDER BY next_run_at LIMIT 1")
            queries.append(f"SELECT {LEASED_DUE} FROM {table} WHERE next_run_at IS NOT NULL"
                           f" AND lease_owner IS NOT NULL ORDER BY {LEASED_DUE} LIMIT 1")
        return queries

    async def claim_due(
        self, owner: str, *, lease_seconds: float, limit: int = 10, now: float | None = None,
        exclude: Sequence[int] = (),
    ) -> list[Job]:
        """Lease up to `limit` due jobs to `owner`; expired leases of dead workers are taken over.

        `exclude` are the jobs this process is running right now: a step outliving its lease must
        never be claimed (and run a second time) by the same process.
        """
        now = time.time() if now is None else now
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        running = ""
        if exclude:
            running = f" AND id NOT IN ({', '.join(str(int(job_id)) for job_id in exclude)})"
        async with self.db.transaction() as conn:
            rows = await conn.fetchall(
                "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id IN ("
                " SELECT id FROM jobs WHERE next_run_at IS NOT NULL AND next_run_at <= ?"
                f" AND (lease_owner IS NULL OR lease_expires_at <= ?){running} ORDER BY next_run_at"
                f" LIMIT ?{skip_locked})"
                f" RETURNING {', '.join(JOB_COLUMNS)}",
                (owner, now + lease_seconds, now, now, limit),
            )
        return sorted((Job.from_row(row) for row in rows), key=lambda job: job.next_run_at or 0)

    async def renew_lease(self, job_id: int, owner: str, *, lease_seconds: float, now: float | None = None) -> str:
        """Heartbeat: extend `owner`'s lease. Returns "held", "released" (nobody holds it: the step gave
        it back or a cancel ended the job) or "lost" (another worker holds it now)."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                (now + lease_seconds, job_id, owner),
            )
            if changed:
                return "held"
            row = await conn.fetchone("SELECT lease_owner FROM jobs WHERE id = ?", (job_id,))
        return "released" if row is None or row[0] is None else "lost"

    async def hold_lease(self, job_id: int, owner: str, *, lease_seconds: float, now: float | None = None) -> None:
        """Re-check (and extend) the lease right before a side effect; raise LeaseLost when it is gone."""
        if await self.renew_lease(job_id, owner, lease_seconds=lease_seconds, now=now) != "held":
            raise LeaseLost(job_id)

    async def acknowledge(self, job_ids: Sequence[int], *, now: float | None = None,
                          card_message_id: int | None = None) -> None:
        """Record that the command's answer was sent: only now may workers use the interaction's webhook.

        `card_message_id` is that answer's message id (the card), kept in the same write so that the card can
        still be deleted through the channel once the interaction token is dead.
        """
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            for job_id in job_ids:
                await conn.execute(
                    "UPDATE jobs SET acked_at = ?, card_message_id = COALESCE(card_message_id, ?)"
                    " WHERE id = ? AND acked_at IS NULL", (now, card_message_id, job_id))

    async def update(
        self,
        job_id: int,
        *,
        owner: str | None = None,
        state: JobState | None = None,
        release: bool = False,
        now: float | None = None,
        notice: bool = True,
        charge: int = 0,
        retire_card: bool = False,
        **changes: Any,
    ) -> Job:
        """Change a job, moving it through the state machine and settling credits on the way.

        With `owner`, the change only applies while that worker still holds the lease. Moving to
        DOWNLOADED captures the reserved credits; FAILED or CANCELED refunds them (exactly once),
        less `charge` credits (a cancel the provider cannot honour), and writes an outbox row in the
        same transaction: the user is told (`notice`, else only the card is updated) even after a crash.
        Moving to DELIVERED with `retire_card` (the result is a message of its own, not the card edited into
        it) owes the progress card's retirement the same way: one row per card, so a /compare pair owes one.
        """
        unknown = set(changes) - MUTABLE_JOB_COLUMNS
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            job = await _row(conn, job_id, lock=self.db.dialect == "postgres")
            if owner is not None and job.lease_owner != owner:
                raise LeaseLost(job_id)
            values = dict(changes)
            if state is not None and state != job.state:
                if state not in TRANSITIONS[job.state]:
                    raise IllegalTransition(job_id, job.state, state)
                values["state"] = state.value
                if state.terminal:
                    values["next_run_at"] = None
                    values["finished_at"] = now
                    release = True
                if job.price:
                    if state is JobState.DOWNLOADED:
                        await ledger.append(
                            conn,
                            user_id=job.user_id,
                            kind=LedgerKind.CAPTURE,
                            amount=0,
                            key=f"settle:{job_id}",
                            job_id=job_id,
                            now=now,
                            reason=f"job {job_id} rendered",
                        )
                    elif state in REFUNDING:
                        charge = max(0, min(charge, job.price))
                        reason = f"job {job_id} {state.value}" + (f"; {charge} credits charged" if charge else "")
                        await ledger.append(
                            conn,
                            user_id=job.user_id,
                            kind=LedgerKind.REFUND if charge < job.price else LedgerKind.CAPTURE,
                            amount=job.price - charge,
                            key=f"settle:{job_id}",
                            job_id=job_id,
                            now=now,
                            reason=reason,
                        )
                owed = None
                if state in REFUNDING:
                    owed = ("ended" if notice else "card", f"end{job_id}")
                elif state is JobState.UNDELIVERED:  # the card must stop showing a live job
                    owed = ("card", f"undelivered{job_id}")
                elif state is JobState.DELIVERED and retire_card:
                    owed = ("retire", f"retire-cmp{job.compare_id}" if job.compare_id is not None
                            else f"retire{job_id}")
                if owed is not None:
                    await conn.execute(
                        "INSERT INTO outbox (job_id, kind, dedup_key, next_run_at, created_at) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (dedup_key) DO NOTHING",
                        (job_id, owed[0], owed[1], now, now),
                    )
                    if self.db.dialect == "postgres":
                        await conn.execute("NOTIFY bot_jobs")  # on commit: a worker delivers the outbox row
            elif state is not None and state.terminal:
                raise IllegalTransition(job_id, job.state, state)
            if release:
                values["lease_owner"] = None
                values["lease_expires_at"] = None
            values["updated_at"] = now
            assignments = ", ".join(f"{column} = ?" for column in values)
            await conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))
            after = await _row(conn, job_id)
        self._notify(job, after)
        return after

    async def partner(self, job: Job) -> Job | None:
        """The other job of a /compare pair."""
        if job.compare_id is None:
            return None
        row = await self.db.fetchone("SELECT * FROM jobs WHERE compare_id = ? AND id != ?", (job.compare_id, job.id))
        return Job.from_row(row) if row else None

    async def get_compare(self, compare_id: int) -> Compare | None:
        row = await self.db.fetchone("SELECT * FROM compares WHERE id = ?", (compare_id,))
        if row is None:
            return None
        return Compare(id=row["id"], user_id=row["user_id"], guild_id=row["guild_id"], blind=bool(row["blind"]),
                       slot_a=row["slot_a"], created_at=row["created_at"])

    async def compare_jobs(self, compare_id: int) -> list[Job]:
        rows = await self.db.fetchall("SELECT * FROM jobs WHERE compare_id = ? ORDER BY id", (compare_id,))
        return [Job.from_row(row) for row in rows]

    async def vote(self, compare_id: int, voter_id: int, winner: str, *, guild_id: int | None,
                   now: float | None = None) -> bool:
        """Record (or change) a vote; True when it is the voter's first on this pair."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            existed = await conn.fetchone(
                "SELECT 1 FROM votes WHERE compare_id = ? AND voter_id = ?", (compare_id, voter_id)
            ) is not None
            await conn.execute(
                "INSERT INTO votes (compare_id, voter_id, guild_id, winner, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (compare_id, voter_id) DO UPDATE SET winner = excluded.winner,"
                " created_at = excluded.created_at",
                (compare_id, voter_id, guild_id, winner, now),
            )
        return not existed

    async def has_voted(self, compare_id: int, voter_id: int) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM votes WHERE compare_id = ? AND voter_id = ?",
                                     (compare_id, voter_id))
        return row is not None

    async def vote_stats(self, guild_id: int | None = None) -> dict[str, int]:
        """Wins per model, overall or in one guild."""
        if guild_id is None:
            rows = await self.db.fetchall("SELECT winner, COUNT(*) FROM votes GROUP BY winner")
        else:
            rows = await self.db.fetchall(
                "SELECT winner, COUNT(*) FROM votes WHERE guild_id = ? GROUP BY winner", (guild_id,)
            )
        stats = {"kling": 0, "sora": 0}
        stats.update({row[0]: int(row[1]) for row in rows})
        return stats

    async def results_finished_before(self, cutoff: float, *, limit: int = 500) -> list[Job]:
        """Delivered or failed jobs whose files are past retention (undelivered ones are kept)."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE result_path IS NOT NULL AND state IN ('delivered', 'failed', 'canceled')"
            " AND finished_at < ? ORDER BY finished_at LIMIT ?",
            (cutoff, limit),
        )
        return [Job.from_row(row) for row in rows]

    async def release_all(self, owner: str) -> int:
        """Give back every lease of a worker that is shutting down cleanly (or restarting): jobs and outbox rows."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?", (owner,)
            )
            return await conn.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?", (owner,)
            )

    async def in_flight_by_model(self) -> dict[str, int]:
        """Jobs accepted but not yet rendered, per model (the metrics' in-flight gauge)."""
        rows = await self.db.fetchall(
            f"SELECT model, COUNT(*) FROM jobs WHERE state IN ({_ACTIVE_SQL}) GROUP BY model")
        return {str(row[0]): int(row[1]) for row in rows}

    async def count_by_state(self) -> dict[JobState, int]:
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {JobState(row[0]): int(row[1]) for row in rows}


    # -- the outbox: user-visible effects written with the state change, delivered at least once --------

    async def claim_outbox(self, owner: str, *, lease_seconds: float, limit: int = 10,
                           now: float | None = None) -> list[OutboxRow]:
        """Lease due outbox rows, like `claim_due` does for jobs."""
        now = time.time() if now is None else now
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        async with self.db.transaction() as conn:
            rows = await conn.fetchall(
                "UPDATE outbox SET lease_owner = ?, lease_expires_at = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE next_run_at IS NOT NULL AND next_run_at <= ?"
                f" AND (lease_owner IS NULL OR lease_expires_at <= ?) ORDER BY next_run_at LIMIT ?{skip_locked})"
                " RETURNING id, job_id, kind, dedup_key, attempts, route, message_id",
                (owner, now + lease_seconds, now, now, limit),
            )
        return [OutboxRow(id=row[0], job_id=row[1], kind=row[2], dedup_key=row[3], attempts=row[4], route=row[5],
                          message_id=row[6]) for row in rows]

    async def outbox_route(self, row_id: int, owner: str, route: str) -> None:
        """Record the route about to be tried (the followup route has no nonce: never tried twice)."""
        async with self.db.transaction() as conn:
            if not await conn.execute("UPDATE outbox SET route = ? WHERE id = ? AND lease_owner = ?",
                                      (route, row_id, owner)):
                raise LeaseLost(row_id)

    async def outbox_finish(self, row_id: int, owner: str | None, *, message_id: int | None = None,
                            error: str | None = None, retry_at: float | None = None,
                            now: float | None = None) -> None:
        """Done (or given up: `error` without `retry_at`), or due again at `retry_at` after a failure."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            if retry_at is not None:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_run_at = ?, lease_owner = NULL,"
                    " lease_expires_at = NULL WHERE id = ?", (error, retry_at, row_id))
            else:
                await conn.execute(
                    "UPDATE outbox SET message_id = COALESCE(?, message_id), last_error = ?, next_run_at = NULL,"
                    " lease_owner = NULL, lease_expires_at = NULL, done_at = ? WHERE id = ?",
                    (message_id, error, now, row_id))

    async def outbox_for_job(self, job_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", (job_id,))
        return [dict(row) for row in rows]


def _chunks(ids: Sequence[int], size: int = 500) -> list[list[int]]:
    """Bound each IN (...) list: SQLite and asyncpg both cap the number of parameters."""
    ids = list(ids)
    return [ids[start:start + size] for start in range(0, len(ids), size)]
