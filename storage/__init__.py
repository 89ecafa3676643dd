"""Persistence: all SQL of the bot lives in this package."""

from storage.models import (
    Compare,
    ConcurrencyLimit,
    CreditPolicy,
    IllegalTransition,
    InsufficientCredits,
    Job,
    JobNotFound,
    JobState,
    LeaseLost,
    LedgerEntry,
    LedgerKind,
    NewJob,
    StorageError,
)
from storage.store import Store

__all__ = [
    "Compare",
    "ConcurrencyLimit",
    "CreditPolicy",
    "IllegalTransition",
    "InsufficientCredits",
    "Job",
    "JobNotFound",
    "JobState",
    "LeaseLost",
    "LedgerEntry",
    "LedgerKind",
    "NewJob",
    "StorageError",
    "Store",
]
