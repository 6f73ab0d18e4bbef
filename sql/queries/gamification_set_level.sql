INSERT INTO gamification_state (user_id, level, level_title, xp_to_next)
VALUES (:user_id, :level, :level_title, :xp_to_next)
ON CONFLICT (user_id) DO UPDATE
    SET level = excluded.level, level_title = excluded.level_title,
        xp_to_next = excluded.xp_to_next
