-- A share from a worker: it exists and is online.
INSERT INTO workers (user_id, name, is_online, last_share_at)
VALUES (:user_id, :name, TRUE, :now)
ON CONFLICT (user_id, name) DO UPDATE
    SET is_online = TRUE, last_share_at = excluded.last_share_at
