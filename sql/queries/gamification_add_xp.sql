-- Atomic increment: concurrent gains for one user never lose XP.
INSERT INTO gamification_state (user_id, xp)
VALUES (:user_id, :amount)
ON CONFLICT (user_id) DO UPDATE SET xp = gamification_state.xp + excluded.xp
RETURNING level, xp
