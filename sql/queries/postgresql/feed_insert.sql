INSERT INTO activity_feed (event_type, user_id, title, description, metadata, is_global, created_at)
VALUES (:event_type, :user_id, :title, :description, CAST(:metadata AS JSONB), :is_global, :now)
RETURNING id, created_at
