-- The user's current hashrate: the sum over online workers.
SELECT COALESCE(SUM(hashrate), 0) AS hashrate
FROM workers
WHERE user_id = :user_id AND is_online = TRUE
