-- V3: guild managers' settings (channels, Sora roles, per-member caps) and their append-only audit.
-- Revises: V2 · 2026-11-27 · issue 12: managers get guild-scoped controls instead of global credits.

CREATE TABLE guild_settings (
    guild_id            INTEGER PRIMARY KEY,
    allowed_channels    TEXT    NOT NULL DEFAULT '[]',  -- JSON list of channel ids; empty = every channel
    sora_roles          TEXT    NOT NULL DEFAULT '[]',  -- JSON list of role ids; empty = every member
    member_daily_cap    INTEGER CHECK (member_daily_cap >= 0),        -- credits per member per UTC day; NULL = none
    member_concurrency  INTEGER CHECK (member_concurrency >= 1),      -- active jobs per member here; NULL = global
    updated_by          INTEGER NOT NULL,
    updated_at          REAL    NOT NULL
);

-- Never updated or deleted: who changed what, when, from what to what.
CREATE TABLE guild_settings_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    actor_id    INTEGER NOT NULL,
    setting     TEXT    NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    created_at  REAL    NOT NULL
);

CREATE INDEX guild_settings_audit_guild ON guild_settings_audit (guild_id, id);
-- Daily caps sum today's jobs: by member in a guild, and across everyone.
CREATE INDEX jobs_user_guild_created ON jobs (user_id, guild_id, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
