SELECT rank, previous_rank, score FROM leaderboard_scores
WHERE category = :category AND user_id = :user_id
