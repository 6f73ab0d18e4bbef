-- A worker went online or offline; an offline worker hashes nothing.
INSERT INTO workers (user_id, name, is_online)
VALUES (:user_id, :name, :online)
ON CONFLICT (user_id, name) DO UPDATE
    SET is_online = excluded.is_online,
        hashrate = CASE WHEN excluded.is_online THEN workers.hashrate ELSE 0 END
