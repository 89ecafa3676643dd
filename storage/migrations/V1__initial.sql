-- V1: users, the credit ledger, jobs, prices, users' own API keys.
-- Revises: (none) · 2026-11-25 · first schema.
-- Times are UTC unix seconds (REAL): they sort, compare and index cheaply.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,          -- Discord user id
    balance       INTEGER NOT NULL DEFAULT 0,   -- cache of SUM(ledger.amount); provably equal (tests)
    created_at    REAL    NOT NULL
);

CREATE TABLE jobs (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users(id),
    guild_id              INTEGER,
    channel_id            INTEGER,
    is_dm                 INTEGER NOT NULL DEFAULT 0,
    guild_installed       INTEGER NOT NULL DEFAULT 1,  -- may the bot post in the channel itself?
    interaction_id        INTEGER,
    application_id        INTEGER,
    interaction_token     TEXT,                        -- encrypted; lives 15 minutes
    token_expires_at      REAL,
    upload_limit          INTEGER,                     -- the interaction's attachment_size_limit
    reference_url         TEXT,                        -- first-frame image to fetch before submitting
    response_message_id   INTEGER,
    model                 TEXT    NOT NULL,
    provider              TEXT    NOT NULL,
    provider_model        TEXT,
    request_json          TEXT    NOT NULL,
    price                 INTEGER NOT NULL DEFAULT 0,
    uses_own_key          INTEGER NOT NULL DEFAULT 0,
    parent_job_id         INTEGER REFERENCES jobs(id),
    state                 TEXT    NOT NULL DEFAULT 'accepted'
        CHECK (state IN ('accepted', 'submitted', 'running', 'downloaded', 'delivered',
                         'undelivered', 'failed', 'canceled')),
    provider_job_id       TEXT,
    submitted_at          REAL,
    progress              INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    next_run_at           REAL,                        -- NULL when nothing is due (terminal)
    lease_owner           TEXT,
    lease_expires_at      REAL,
    result_path           TEXT,
    result_url            TEXT,
    result_bytes          INTEGER,
    delivered_message_id  INTEGER,
    delivered_channel_id  INTEGER,
    delivery_nonce        TEXT,
    error_code            TEXT,
    error_message         TEXT,
    last_progress_edit_at REAL,
    created_at            REAL    NOT NULL,
    updated_at            REAL    NOT NULL,
    finished_at           REAL
);

CREATE INDEX jobs_due ON jobs (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX jobs_user_state ON jobs (user_id, state);

CREATE TABLE ledger (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    kind             TEXT    NOT NULL
        CHECK (kind IN ('grant', 'daily', 'reserve', 'capture', 'refund', 'adjust')),
    amount           INTEGER NOT NULL,        -- signed effect on the spendable balance
    job_id           INTEGER REFERENCES jobs(id),
    idempotency_key  TEXT    NOT NULL UNIQUE,  -- a retried action can never apply twice
    actor_id         INTEGER,                 -- who did it, for admin actions
    reason           TEXT,
    created_at       REAL    NOT NULL
);

CREATE INDEX ledger_user ON ledger (user_id, id);
CREATE INDEX ledger_job ON ledger (job_id);

CREATE TABLE prices (
    key          TEXT    PRIMARY KEY,    -- kling_per_second | sora_per_second | sora_high_per_second
    credits      INTEGER NOT NULL CHECK (credits >= 0),
    updated_by   INTEGER,
    updated_at   REAL    NOT NULL
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id    INTEGER NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_at  REAL    NOT NULL
);

CREATE TABLE user_keys (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    provider    TEXT    NOT NULL,
    ciphertext  BLOB    NOT NULL,            -- Fernet(SECRET_KEY); never plaintext
    created_at  REAL    NOT NULL,
    PRIMARY KEY (user_id, provider)
);
