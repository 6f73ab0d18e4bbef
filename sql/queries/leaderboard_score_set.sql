INSERT INTO leaderboard_scores (category, user_id, score, updated_at)
VALUES (:category, :user_id, :score, :now)
ON CONFLICT (category, user_id) DO UPDATE
    SET score = excluded.score, updated_at = excluded.updated_at
