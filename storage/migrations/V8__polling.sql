-- V8: index-backed "when is the next job due", and webhook health shared between processes.
-- Revises: V7 · 2026-11-27 · issue 15: next_due_at scanned leased rows; workers never learned webhooks work.
--
-- next_due_at asks two MINs per table: over free rows (next_run_at) and over leased rows (the later
-- of next_run_at and the lease's expiry). jobs_due / outbox_due cover next_run_at for all rows, so
-- the first MIN walked past every leased row and the second scanned them. One partial index per
-- part; the leased one is on the exact expression the query orders by.
CREATE INDEX jobs_free_due ON jobs (next_run_at) WHERE next_run_at IS NOT NULL AND lease_owner IS NULL;
CREATE INDEX jobs_leased_due ON jobs ((CASE WHEN lease_expires_at > next_run_at THEN lease_expires_at
    ELSE next_run_at END)) WHERE next_run_at IS NOT NULL AND lease_owner IS NOT NULL;
CREATE INDEX outbox_free_due ON outbox (next_run_at) WHERE next_run_at IS NOT NULL AND lease_owner IS NULL;
CREATE INDEX outbox_leased_due ON outbox ((CASE WHEN lease_expires_at > next_run_at THEN lease_expires_at
    ELSE next_run_at END)) WHERE next_run_at IS NOT NULL AND lease_owner IS NOT NULL;

-- When a verified webhook of each provider last arrived. The gateway (bot/web.py) receives them;
-- workers that only poll read this to know their jobs will be nudged and need few looks.
CREATE TABLE webhook_health (
    provider     TEXT PRIMARY KEY,
    last_seen_at REAL NOT NULL
);
