-- V2: /compare pairs and community votes.
-- Revises: V1 · 2026-11-25 · compare posts one message for two jobs; votes feed /compare-stats.

CREATE TABLE compares (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    guild_id      INTEGER,
    blind         INTEGER NOT NULL DEFAULT 0,
    slot_a        TEXT    NOT NULL CHECK (slot_a IN ('kling', 'sora')),  -- which model is shown as A
    message_id    INTEGER,
    created_at    REAL    NOT NULL
);

ALTER TABLE jobs ADD COLUMN compare_id INTEGER REFERENCES compares(id);
CREATE INDEX jobs_compare ON jobs (compare_id) WHERE compare_id IS NOT NULL;

CREATE TABLE votes (
    compare_id  INTEGER NOT NULL REFERENCES compares(id),
    voter_id    INTEGER NOT NULL,
    guild_id    INTEGER,
    winner      TEXT    NOT NULL CHECK (winner IN ('kling', 'sora')),
    created_at  REAL    NOT NULL,
    PRIMARY KEY (compare_id, voter_id)
);
