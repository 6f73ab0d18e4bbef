-- Idempotency keys of POST /api/events (the optional Idempotency-Key header): a retried event
-- is stored once and published once. `plan` holds what the first attempt has to publish (JSON),
-- `published` how far it got ([[channel, offset], ...]), `answer` the 202 body once done.
CREATE TABLE IF NOT EXISTS ingest_keys (
    key             VARCHAR(255) PRIMARY KEY,
    body_hash       VARCHAR(64) NOT NULL,
    state           VARCHAR(16) NOT NULL,
    plan            TEXT NOT NULL DEFAULT '{}',
    published       TEXT NOT NULL DEFAULT '[]',
    answer          TEXT,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_ingest_keys_updated ON ingest_keys(updated_at);
