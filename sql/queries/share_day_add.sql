-- Add shares to the user's day and keep the day's best difficulty.
INSERT INTO share_days (user_id, day, shares, best_diff)
VALUES (:user_id, :day, :shares, :difficulty)
ON CONFLICT (user_id, day) DO UPDATE
    SET shares = share_days.shares + excluded.shares,
        best_diff = CASE WHEN excluded.best_diff > share_days.best_diff
                         THEN excluded.best_diff ELSE share_days.best_diff END
