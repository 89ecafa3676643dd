-- V4: observed render times, so the poller's schedule learns each model's real wait.
-- Revises: V3 · 2026-11-27 · issue 15: polls placed by the hazard of observed render times.

CREATE TABLE render_times (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    duration     REAL    NOT NULL,
    resolution   TEXT    NOT NULL,
    low_seconds  REAL    NOT NULL,  -- model seconds: still running at this age (last look)
    high_seconds REAL    NOT NULL,  -- done by this age (the look that saw it finished)
    observed_at  REAL    NOT NULL
);
CREATE INDEX render_times_key ON render_times (provider, model, duration, resolution, id);
