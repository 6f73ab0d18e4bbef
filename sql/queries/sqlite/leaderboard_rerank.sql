-- Recompute the category's ranks; only rows whose rank moved are written and returned.
UPDATE leaderboard_scores AS l
SET previous_rank = l.rank, rank = r.new_rank
FROM (
    SELECT user_id,
           ROW_NUMBER() OVER (ORDER BY score DESC, updated_at ASC, user_id ASC) AS new_rank
    FROM leaderboard_scores
    WHERE category = :category
) AS r
WHERE l.category = :category AND l.user_id = r.user_id AND l.rank IS NOT r.new_rank
RETURNING user_id, rank, previous_rank
