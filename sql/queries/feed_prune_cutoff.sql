-- The newest global item beyond the ones kept, or no row.
SELECT id
FROM activity_feed
WHERE is_global = TRUE
ORDER BY id DESC
LIMIT 1 OFFSET :keep
