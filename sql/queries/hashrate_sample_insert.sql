INSERT INTO hashrate_samples (user_id, sampled_at, hashrate)
VALUES (:user_id, :now, :hashrate)
