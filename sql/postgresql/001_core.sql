-- Users, workers, share aggregates, network state (DESIGN §11).
CREATE TABLE IF NOT EXISTS users (
    id              BIGINT PRIMARY KEY,
    display_name    VARCHAR(64) NOT NULL,
    btc_address     VARCHAR(128),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS workers (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            VARCHAR(64) NOT NULL,
    is_online       BOOLEAN NOT NULL DEFAULT FALSE,
    hashrate        DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_share_at   TIMESTAMPTZ,
    UNIQUE (user_id, name)
);

-- Shares are kept as per-user, per-day aggregates, not one row per share.
CREATE TABLE IF NOT EXISTS share_days (
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day             DATE NOT NULL,
    shares          BIGINT NOT NULL DEFAULT 0,
    best_diff       DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

CREATE TABLE IF NOT EXISTS hashrate_samples (
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sampled_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    hashrate        DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_hashrate_samples_user ON hashrate_samples(user_id, sampled_at DESC);

CREATE TABLE IF NOT EXISTS network_state (
    key             VARCHAR(32) PRIMARY KEY,
    value           DOUBLE PRECISION NOT NULL
);
