-- Gamification state, badges, leaderboards (DESIGN §11, seed 001).
CREATE TABLE IF NOT EXISTS gamification_state (
    user_id             BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    level               INTEGER NOT NULL DEFAULT 1,
    level_title         VARCHAR(64) NOT NULL DEFAULT 'Nocoiner',
    xp                  BIGINT NOT NULL DEFAULT 0,
    xp_to_next          BIGINT NOT NULL DEFAULT 100,
    streak              INTEGER NOT NULL DEFAULT 0,
    streak_updated_at   TEXT
);

CREATE TABLE IF NOT EXISTS badges (
    id              VARCHAR(64) PRIMARY KEY,
    name            VARCHAR(128) NOT NULL,
    description     TEXT,
    icon            VARCHAR(16),
    rarity          VARCHAR(16) NOT NULL DEFAULT 'common'
);

CREATE TABLE IF NOT EXISTS user_badges (
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    badge_id        VARCHAR(64) NOT NULL REFERENCES badges(id),
    earned_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, badge_id)
);
CREATE INDEX IF NOT EXISTS idx_user_badges_recent ON user_badges(user_id, earned_at DESC);

CREATE TABLE IF NOT EXISTS leaderboard_scores (
    category        VARCHAR(64) NOT NULL,
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    score           REAL NOT NULL DEFAULT 0,
    rank            INTEGER,
    previous_rank   INTEGER,
    updated_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (category, user_id)
);
CREATE INDEX IF NOT EXISTS idx_leaderboard_rank ON leaderboard_scores(category, score DESC);
