SELECT level, level_title, xp, xp_to_next, streak
FROM gamification_state
WHERE user_id = :user_id
