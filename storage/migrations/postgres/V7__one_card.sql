-- V7 (PostgreSQL twin): the card's message id, and the outbox kind `retire`.
-- Revises: V6 · 2026-11-27 · see the SQLite V7 for the why.

ALTER TABLE jobs ADD COLUMN card_message_id BIGINT;
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('ended', 'card', 'retire'));
