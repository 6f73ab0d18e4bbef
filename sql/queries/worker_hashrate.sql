-- A worker reported its hashrate: it is online.
INSERT INTO workers (user_id, name, is_online, hashrate)
VALUES (:user_id, :name, TRUE, :hashrate)
ON CONFLICT (user_id, name) DO UPDATE
    SET is_online = TRUE, hashrate = excluded.hashrate
