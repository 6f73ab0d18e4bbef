-- The global feed, newest first; the id is the paging cursor.
SELECT id, event_type, title, description, metadata, created_at
FROM activity_feed
WHERE is_global = TRUE AND id < :before_id
ORDER BY id DESC
LIMIT :limit
