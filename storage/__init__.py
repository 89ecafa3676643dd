"""Persistence: all SQL of the bot lives in this package."""

from storage.models import (
    Compare,
    ConcurrencyLimit,
    CreditPolicy,
    DailySpendLimit,
    GuildSettings,
    IllegalTransition,
    InsufficientCredits,
    Job,
    JobNotFound,
    JobState,
    LeaseLost,
    LedgerEntry,
    LedgerKind,
    MemberDailyCap,
    NewJob,
    SettingsChange,
    StorageError,
)
from storage.store import Store

__all__ = [
    "Compare",
    "ConcurrencyLimit",
    "CreditPolicy",
    "DailySpendLimit",
    "GuildSettings",
    "IllegalTransition",
    "InsufficientCredits",
    "Job",
    "JobNotFound",
    "JobState",
    "LeaseLost",
    "LedgerEntry",
    "LedgerKind",
    "MemberDailyCap",
    "NewJob",
    "SettingsChange",
    "StorageError",
    "Store",
]
