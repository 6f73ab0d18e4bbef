-- The caller's badges, newest first.
SELECT b.id, b.name, b.description, b.icon, b.rarity, ub.earned_at
FROM user_badges AS ub
JOIN badges AS b ON b.id = ub.badge_id
WHERE ub.user_id = :user_id
ORDER BY ub.earned_at DESC, b.id ASC
LIMIT :limit
