-- V6: idempotent provider submits, acknowledged interactions, a transactional outbox for notices.
-- Revises: V5 · 2026-11-27 · issue 13: a `submitting` state with a per-job request key (recovery finds
-- the provider's task instead of submitting twice); `acked_at` (workers leave an interaction's webhook
-- alone until its answer is recorded); `outbox` rows written in the same transaction as a job's end.
-- SQLite cannot change a CHECK constraint in place: the jobs table is rebuilt (the migration runner
-- turns foreign keys off around migrations and checks them afterwards).

CREATE TABLE jobs_new (
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
    model                 TEXT    NOT NULL,
    provider              TEXT    NOT NULL,
    provider_model        TEXT,
    request_json          TEXT    NOT NULL,
    price                 INTEGER NOT NULL DEFAULT 0,
    uses_own_key          INTEGER NOT NULL DEFAULT 0,
    parent_job_id         INTEGER REFERENCES jobs(id),
    state                 TEXT    NOT NULL DEFAULT 'accepted'
        CHECK (state IN ('accepted', 'submitting', 'submitted', 'running', 'downloaded', 'delivered',
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
    error_code            TEXT,
    error_message         TEXT,
    last_progress_edit_at REAL,
    created_at            REAL    NOT NULL,
    updated_at            REAL    NOT NULL,
    finished_at           REAL,
    compare_id            INTEGER REFERENCES compares(id),
    request_key           TEXT,                        -- per-job submit key, unique per install (idempotent submit)
    acked_at              REAL                         -- when the interaction's answer was recorded (NULL: not yet)
);

INSERT INTO jobs_new (id, user_id, guild_id, channel_id, is_dm, guild_installed, interaction_id, application_id, interaction_token, token_expires_at, upload_limit, reference_url, model, provider, provider_model, request_json, price, uses_own_key, parent_job_id, state, provider_job_id, submitted_at, progress, attempts, next_run_at, lease_owner, lease_expires_at, result_path, result_url, result_bytes, delivered_message_id, delivered_channel_id, error_code, error_message, last_progress_edit_at, created_at, updated_at, finished_at, compare_id, acked_at)
    SELECT id, user_id, guild_id, channel_id, is_dm, guild_installed, interaction_id, application_id, interaction_token, token_expires_at, upload_limit, reference_url, model, provider, provider_model, request_json, price, uses_own_key, parent_job_id, state, provider_job_id, submitted_at, progress, attempts, next_run_at, lease_owner, lease_expires_at, result_path, result_url, result_bytes, delivered_message_id, delivered_channel_id, error_code, error_message, last_progress_edit_at, created_at, updated_at, finished_at, compare_id, created_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX jobs_due ON jobs (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX jobs_user_state ON jobs (user_id, state);
CREATE INDEX jobs_compare ON jobs (compare_id) WHERE compare_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_request_key ON jobs (request_key) WHERE request_key IS NOT NULL;
CREATE INDEX jobs_provider_job ON jobs (provider, provider_job_id) WHERE provider_job_id IS NOT NULL;
-- Indexes earlier migrations put on jobs (dropped with the old table): keep this list in step with them.
CREATE INDEX IF NOT EXISTS jobs_user_guild_created ON jobs (user_id, guild_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);

CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            INTEGER NOT NULL REFERENCES jobs(id),
    kind              TEXT    NOT NULL CHECK (kind IN ('ended', 'card')),  -- notice + card edit, or card edit only
    dedup_key         TEXT    NOT NULL UNIQUE,                            -- also the Discord nonce
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_run_at       REAL,                                               -- NULL once done or given up
    lease_owner       TEXT,
    lease_expires_at  REAL,
    route             TEXT,                                               -- the route tried last (followup has no nonce)
    message_id        INTEGER,
    last_error        TEXT,
    created_at        REAL    NOT NULL,
    done_at           REAL
);
CREATE INDEX outbox_due ON outbox (next_run_at) WHERE next_run_at IS NOT NULL;
