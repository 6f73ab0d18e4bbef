INSERT INTO gamification_state (user_id, streak, streak_updated_at)
VALUES (:user_id, :streak, :now)
ON CONFLICT (user_id) DO UPDATE
    SET streak = excluded.streak, streak_updated_at = excluded.streak_updated_at
