-- V9: list sweeps (bot/sweep.py): one process per provider and interval lists the account's tasks.
-- Revises: V8 · 2026-11-27 · issue 15: per-job polling cannot meet its targets on wide finish-time spreads.
--
-- A worker sweeps a provider only if it moves `swept_at` forward past the interval itself (one UPDATE),
-- so N workers make one list request per interval, not N.
CREATE TABLE provider_sweeps (
    provider TEXT PRIMARY KEY,
    swept_at REAL NOT NULL
);
