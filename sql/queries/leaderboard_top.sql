SELECT l.rank, l.previous_rank, l.user_id, u.display_name, l.score
FROM leaderboard_scores AS l
JOIN users AS u ON u.id = l.user_id
WHERE l.category = :category
ORDER BY l.rank ASC, l.user_id ASC
LIMIT :limit
