-- V5: drop columns nothing reads or writes.
-- Revises: V4 (columns of V1, V2) · 2026-11-27 · jobs.delivery_nonce (delivery derives its nonce from the job id),
-- jobs.response_message_id (progress edits address "@original"), compares.message_id (both halves
-- record delivered_message_id instead). Same change as the SQLite migration.

ALTER TABLE jobs DROP COLUMN delivery_nonce;
ALTER TABLE jobs DROP COLUMN response_message_id;
ALTER TABLE compares DROP COLUMN message_id;
