-- V7: one message per job. The card's message id is recorded with the acknowledgement (so the card can be
-- deleted through the channel once the interaction token is dead), and the outbox learns a third kind,
-- `retire`: delete (or finalise) the progress card once the result is posted as its own message.
-- Revises: V6 · 2026-11-27 · issue 14 item 2. SQLite cannot change a CHECK in place: outbox is rebuilt.

ALTER TABLE jobs ADD COLUMN card_message_id INTEGER;  -- the command's public answer (NULL: unknown)

CREATE TABLE outbox_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            INTEGER NOT NULL REFERENCES jobs(id),
    kind              TEXT    NOT NULL CHECK (kind IN ('ended', 'card', 'retire')),
    dedup_key         TEXT    NOT NULL UNIQUE,                            -- also the Discord nonce
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_run_at       REAL,                                               -- NULL once done or given up
    lease_owner       TEXT,
    lease_expires_at  REAL,
    route             TEXT,                                               -- the route tried last
    message_id        INTEGER,
    last_error        TEXT,
    created_at        REAL    NOT NULL,
    done_at           REAL
);
INSERT INTO outbox_new (id, job_id, kind, dedup_key, attempts, next_run_at, lease_owner, lease_expires_at, route,
                        message_id, last_error, created_at, done_at)
    SELECT id, job_id, kind, dedup_key, attempts, next_run_at, lease_owner, lease_expires_at, route, message_id,
           last_error, created_at, done_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_run_at) WHERE next_run_at IS NOT NULL;
