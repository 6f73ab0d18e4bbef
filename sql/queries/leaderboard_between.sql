SELECT l.rank, l.previous_rank, l.user_id, u.display_name, l.score
FROM leaderboard_scores AS l
JOIN users AS u ON u.id = l.user_id
WHERE l.category = :category AND l.rank BETWEEN :first AND :last
ORDER BY l.rank ASC
