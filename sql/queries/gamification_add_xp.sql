-- Atomic increment: concurrent gains for one user never lose XP. Capped at max_xp
-- (events.MAX_XP), compared by subtraction so the addition itself can never overflow BIGINT.
INSERT INTO gamification_state (user_id, xp)
VALUES (:user_id, :amount)
ON CONFLICT (user_id) DO UPDATE
    SET xp = CASE WHEN gamification_state.xp > :max_xp - excluded.xp THEN :max_xp
                  ELSE gamification_state.xp + excluded.xp END
RETURNING level, xp
