-- dashboard_stats for many users in one round trip (a reconnect storm's snapshots): the
-- same columns plus user_id, one row per id of the user_ids parameter (a JSON array of integers).
SELECT
    u.user_id,
    (SELECT AVG(hashrate) FROM hashrate_samples
      WHERE user_id = u.user_id AND sampled_at >= :since_5m) AS hashrate_5m,
    (SELECT AVG(hashrate) FROM hashrate_samples
      WHERE user_id = u.user_id AND sampled_at >= :since_24h AND sampled_at < :since_5m)
        AS hashrate_24h,
    (SELECT SUM(hashrate) FROM workers
      WHERE user_id = u.user_id AND is_online = TRUE) AS hashrate_workers,
    (SELECT COUNT(*) FROM workers WHERE user_id = u.user_id AND is_online = TRUE)
        AS workers_online,
    (SELECT COUNT(*) FROM workers WHERE user_id = u.user_id) AS workers_total,
    (SELECT shares FROM share_days WHERE user_id = u.user_id AND day = :today) AS shares_today,
    (SELECT shares FROM share_days WHERE user_id = u.user_id AND day = :yesterday)
        AS shares_yesterday,
    (SELECT MAX(best_diff) FROM share_days
      WHERE user_id = u.user_id AND day >= :week_start) AS best_diff_week,
    (SELECT value FROM network_state WHERE key = 'difficulty') AS network_diff,
    (SELECT value FROM network_state WHERE key = 'height') AS network_height,
    (SELECT COUNT(*) FROM user_badges WHERE user_id = u.user_id) AS badges_earned,
    g.level, g.level_title, g.xp, g.xp_to_next, g.streak
FROM (SELECT CAST(value AS INTEGER) AS user_id FROM json_each(:user_ids)) AS u
LEFT JOIN gamification_state AS g ON g.user_id = u.user_id
