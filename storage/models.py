"""Plain data the storage layer hands out: no discord objects, no SQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """A job's life; `TRANSITIONS` is the only way between states."""

    ACCEPTED = "accepted"  # stored and paid for, not yet at the provider
    SUBMITTING = "submitting"  # intent recorded (request_key): the provider may or may not have the task
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


ACTIVE = frozenset({JobState.ACCEPTED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING})
TERMINAL = frozenset({JobState.DELIVERED, JobState.FAILED, JobState.CANCELED})
REFUNDING = frozenset({JobState.FAILED, JobState.CANCELED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.SUBMITTING, JobState.FAILED, JobState.CANCELED}),
    JobState.SUBMITTING: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELED}),
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
    """Not enough credits; `grants_from` is when a too-young account starts getting grants (else None)."""

    def __init__(self, balance: int, price: int, grants_from: float | None = None) -> None:
        super().__init__(f"balance {balance} < price {price}")
        self.balance = balance
        self.price = price
        self.grants_from = grants_from


class ConcurrencyLimit(StorageError):
    """Too many active jobs: the user's global cap, or (with `guild`) a guild's per-member cap."""

    def __init__(self, active: int, cap: int, *, guild: bool = False) -> None:
        super().__init__(f"{active} active jobs, cap {cap}" + (" in this guild" if guild else ""))
        self.active = active
        self.cap = cap
        self.guild = guild


class MemberDailyCap(StorageError):
    """A guild's per-member daily spending cap would be exceeded by this job."""

    def __init__(self, spent: int, price: int, cap: int) -> None:
        super().__init__(f"spent {spent} today in this guild, price {price}, cap {cap}")
        self.spent = spent
        self.price = price
        self.cap = cap


class DailySpendLimit(StorageError):
    """The bot-wide DAILY_SPEND_LIMIT (credits across all users per UTC day) would be exceeded."""

    def __init__(self, spent: int, price: int, limit: int) -> None:
        super().__init__(f"spent {spent} today across all users, price {price}, limit {limit}")
        self.spent = spent
        self.price = price
        self.limit = limit


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
class OutboxRow:
    """A user-visible effect owed for a job (`ended`: notice and card edit; `card`: card edit only;
    `retire`: the result was posted as its own message, so the progress card goes)."""

    id: int
    job_id: int
    kind: str
    dedup_key: str
    attempts: int
    route: str | None
    message_id: int | None


@dataclass(frozen=True)
class Compare:
    """A /compare pair: one Kling and one Sora job, shown as A and B."""

    id: int
    user_id: int
    guild_id: int | None
    blind: bool
    slot_a: str
    created_at: float

    def model_in(self, slot: str) -> str:
        other = "sora" if self.slot_a == "kling" else "kling"
        return self.slot_a if slot == "a" else other


@dataclass(frozen=True)
class ComparePairing:
    """How a /compare pair is shown, chosen before its jobs exist: blind or not, and which model is A."""

    blind: bool
    slot_a: str  # "kling" or "sora"

    def __post_init__(self) -> None:
        if self.slot_a not in ("kling", "sora"):
            raise ValueError(f"slot A holds kling or sora, not {self.slot_a!r}")


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
    error_code: str | None
    error_message: str | None
    last_progress_edit_at: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    compare_id: int | None
    request_key: str | None = None
    acked_at: float | None = None
    card_message_id: int | None = None  # the command's public answer, recorded with the acknowledgement

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data: dict[str, Any] = {name: row[name] for name in JOB_COLUMNS}
        data["state"] = JobState(data["state"])
        for flag in ("is_dm", "guild_installed", "uses_own_key"):
            data[flag] = bool(data[flag])
        return cls(**data)


@dataclass(frozen=True)
class SweepTarget:
    """A render in flight, as a list sweep (bot/sweep.py) needs to see it."""

    job_id: int
    provider: str
    provider_job_id: str
    state: JobState
    progress: int | None
    submitted_at: float


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))
# Columns a worker may change through `JobStore.update`; identity and money are not among them.
MUTABLE_JOB_COLUMNS = frozenset(
    {
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
        "error_code",
        "error_message",
        "last_progress_edit_at",
        "interaction_token",
        "request_key",
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
    daily_spend_limit: int | None = None  # credits across all users per UTC day, net of refunds
    new_account_min_days: float = 0.0  # younger Discord accounts get no welcome or daily grant yet
    # Subscribers' daily grants, {user id: credits}: kept current by the bot from Discord's entitlements.
    # The dict is shared and mutated in place (the policy itself stays frozen).
    subscriber_daily: dict[int, int] = field(default_factory=dict, hash=False, compare=False)

    def daily_grant_for(self, user_id: int) -> int:
        """Today's grant for this user: their subscription's, else the everyone's DAILY_GRANT."""
        return self.subscriber_daily.get(user_id, self.daily_grant)

    def grants_from(self, user_id: int) -> float:
        """When the account is old enough for grants (unix seconds), from the creation time in its id.

        The id comes from Discord, not from anything the user typed, so it cannot be faked.
        """
        return account_created_at(user_id) + self.new_account_min_days * 86400


DISCORD_EPOCH_MS = 1_420_070_400_000


def account_created_at(user_id: int) -> float:
    """A Discord snowflake's creation time in unix seconds: `(id >> 22) + 1420070400000` ms."""
    return ((user_id >> 22) + DISCORD_EPOCH_MS) / 1000


@dataclass(frozen=True)
class GuildSettings:
    """A guild manager's rules for their guild; the defaults mean "no restriction"."""

    guild_id: int
    allowed_channels: frozenset[int] = frozenset()  # empty = every channel
    sora_roles: frozenset[int] = frozenset()  # empty = every member may use Sora
    member_daily_cap: int | None = None  # credits per member per UTC day in this guild
    member_concurrency: int | None = None  # active jobs per member in this guild

    def channel_allowed(self, *channel_ids: int | None) -> bool:
        """True when no channel list is set, or one of the ids (a thread and its parent) is on it."""
        return not self.allowed_channels or any(c in self.allowed_channels for c in channel_ids if c)

    def may_use_sora(self, role_ids: set[int]) -> bool:
        return not self.sora_roles or bool(self.sora_roles & role_ids)


@dataclass(frozen=True)
class SettingsChange:
    """One audited change of a guild setting (append-only)."""

    id: int
    guild_id: int
    actor_id: int
    setting: str
    old_value: str | None
    new_value: str | None
    created_at: float
