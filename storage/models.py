"""Plain data the storage layer hands out: no discord objects, no SQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """A job's life; `TRANSITIONS` is the only way between states."""

    ACCEPTED = "accepted"  # stored and paid for, not yet at the provider
    SUBMITTED = "submitted"  # the provider has it
    RUNNING = "running"  # the provider reported progress
    DOWNLOADED = "downloaded"  # our own copy is on disk; credits captured
    DELIVERED = "delivered"  # posted to Discord (message id recorded)
    UNDELIVERED = "undelivered"  # rendered but Discord refused every route; link kept for /job show
    FAILED = "failed"  # refunded
    CANCELED = "canceled"  # refunded

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Still occupying one of the user's concurrent render slots."""
        return self in ACTIVE


ACTIVE = frozenset({JobState.ACCEPTED, JobState.SUBMITTED, JobState.RUNNING})
TERMINAL = frozenset({JobState.DELIVERED, JobState.FAILED, JobState.CANCELED})
REFUNDING = frozenset({JobState.FAILED, JobState.CANCELED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELED}),
    JobState.SUBMITTED: frozenset({JobState.RUNNING, JobState.DOWNLOADED, JobState.FAILED, JobState.CANCELED}),
    JobState.RUNNING: frozenset({JobState.RUNNING, JobState.DOWNLOADED, JobState.FAILED, JobState.CANCELED}),
    JobState.DOWNLOADED: frozenset({JobState.DELIVERED, JobState.UNDELIVERED}),
    JobState.UNDELIVERED: frozenset({JobState.DELIVERED}),
    JobState.DELIVERED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
}


class StorageError(Exception):
    """Base of the errors callers are expected to handle."""


class IllegalTransition(StorageError):
    def __init__(self, job_id: int, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id}: {current} -> {target} is not allowed")
        self.current = current
        self.target = target


class JobNotFound(StorageError):
    pass


class LeaseLost(StorageError):
    """Another worker owns the job now; this worker's result must be dropped."""


class InsufficientCredits(StorageError):
    def __init__(self, balance: int, price: int) -> None:
        super().__init__(f"balance {balance} < price {price}")
        self.balance = balance
        self.price = price


class ConcurrencyLimit(StorageError):
    def __init__(self, active: int, cap: int) -> None:
        super().__init__(f"{active} active jobs, cap {cap}")
        self.active = active
        self.cap = cap


@dataclass(frozen=True)
class NewJob:
    """What a command knows when it creates a job."""

    user_id: int
    model: str
    provider: str
    request_json: str
    price: int
    guild_id: int | None = None
    channel_id: int | None = None
    is_dm: bool = False
    guild_installed: bool = True
    interaction_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    upload_limit: int | None = None
    reference_url: str | None = None
    provider_model: str | None = None
    uses_own_key: bool = False
    parent_job_id: int | None = None


@dataclass(frozen=True)
class Compare:
    """A /compare pair: one Kling and one Sora job, shown as A and B."""

    id: int
    user_id: int
    guild_id: int | None
    blind: bool
    slot_a: str
    message_id: int | None
    created_at: float

    def model_in(self, slot: str) -> str:
        other = "sora" if self.slot_a == "kling" else "kling"
        return self.slot_a if slot == "a" else other


@dataclass(frozen=True)
class Job:
    """One row of `jobs`."""

    id: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    is_dm: bool
    guild_installed: bool
    interaction_id: int | None
    application_id: int | None
    interaction_token: str | None
    token_expires_at: float | None
    upload_limit: int | None
    reference_url: str | None
    response_message_id: int | None
    model: str
    provider: str
    provider_model: str | None
    request_json: str
    price: int
    uses_own_key: bool
    parent_job_id: int | None
    state: JobState
    provider_job_id: str | None
    submitted_at: float | None
    progress: int | None
    attempts: int
    next_run_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    result_path: str | None
    result_url: str | None
    result_bytes: int | None
    delivered_message_id: int | None
    delivered_channel_id: int | None
    delivery_nonce: str | None
    error_code: str | None
    error_message: str | None
    last_progress_edit_at: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    compare_id: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data: dict[str, Any] = {name: row[name] for name in JOB_COLUMNS}
        data["state"] = JobState(data["state"])
        for flag in ("is_dm", "guild_installed", "uses_own_key"):
            data[flag] = bool(data[flag])
        return cls(**data)


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))
# Columns a worker may change through `JobStore.update`; identity and money are not among them.
MUTABLE_JOB_COLUMNS = frozenset(
    {
        "response_message_id",
        "provider_model",
        "provider_job_id",
        "submitted_at",
        "progress",
        "attempts",
        "next_run_at",
        "result_path",
        "result_url",
        "result_bytes",
        "delivered_message_id",
        "delivered_channel_id",
        "delivery_nonce",
        "error_code",
        "error_message",
        "last_progress_edit_at",
        "interaction_token",
    }
)


class LedgerKind(StrEnum):
    GRANT = "grant"  # start balance
    DAILY = "daily"  # lazy daily grant
    RESERVE = "reserve"  # held for a job (negative)
    CAPTURE = "capture"  # the job produced a video: the hold becomes spend (zero)
    REFUND = "refund"  # the hold comes back (positive)
    ADJUST = "adjust"  # admin grant or correction (signed)


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    user_id: int
    kind: LedgerKind
    amount: int
    job_id: int | None
    idempotency_key: str
    actor_id: int | None
    reason: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LedgerEntry:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            kind=LedgerKind(row["kind"]),
            amount=row["amount"],
            job_id=row["job_id"],
            idempotency_key=row["idempotency_key"],
            actor_id=row["actor_id"],
            reason=row["reason"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class CreditPolicy:
    """How credits are handed out; from settings."""

    start_balance: int = 100
    daily_grant: int = 20
    max_concurrent_jobs: int = 2
