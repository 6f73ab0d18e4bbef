-- Active events not yet over, global or aimed at this user, soonest first (seed 000 §3.5.1).
SELECT id, event_type, title, description, ends_at, action_label, action_href
FROM upcoming_events
WHERE is_active = TRUE
  AND ends_at > :now
  AND (target_user_id IS NULL OR target_user_id = :user_id)
ORDER BY ends_at ASC, id ASC
LIMIT :limit
