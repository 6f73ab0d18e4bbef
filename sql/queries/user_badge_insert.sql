-- No row back when the user already had the badge.
INSERT INTO user_badges (user_id, badge_id, earned_at)
VALUES (:user_id, :badge_id, :earned_at)
ON CONFLICT (user_id, badge_id) DO NOTHING
RETURNING badge_id
