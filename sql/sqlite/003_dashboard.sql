-- Activity feed and upcoming events, as in seed 000 §3.4.
CREATE TABLE IF NOT EXISTS activity_feed (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type      VARCHAR(32) NOT NULL,
    user_id         BIGINT REFERENCES users(id) ON DELETE SET NULL,
    title           TEXT NOT NULL,
    description     TEXT,
    metadata        TEXT DEFAULT '{}',
    is_global       BOOLEAN DEFAULT TRUE,
    created_at      TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_activity_feed_global ON activity_feed(created_at DESC) WHERE is_global = 1;
CREATE INDEX IF NOT EXISTS idx_activity_feed_user ON activity_feed(user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS upcoming_events (
    id              VARCHAR(64) PRIMARY KEY,
    event_type      VARCHAR(32) NOT NULL,
    title           VARCHAR(256) NOT NULL,
    description     TEXT,
    starts_at       TEXT,
    ends_at         TEXT NOT NULL,
    action_label    VARCHAR(64),
    action_href     VARCHAR(256),
    is_active       BOOLEAN DEFAULT TRUE,
    target_user_id  BIGINT REFERENCES users(id) ON DELETE CASCADE,
    metadata        TEXT DEFAULT '{}',
    created_at      TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_events_active ON upcoming_events(ends_at ASC) WHERE is_active = 1;
CREATE INDEX IF NOT EXISTS idx_events_user ON upcoming_events(target_user_id, ends_at ASC) WHERE is_active = 1;
