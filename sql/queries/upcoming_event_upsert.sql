INSERT INTO upcoming_events (id, event_type, title, description, starts_at, ends_at,
                             action_label, action_href, is_active, target_user_id, metadata,
                             created_at)
VALUES (:id, :event_type, :title, :description, :starts_at, :ends_at,
        :action_label, :action_href, TRUE, :target_user_id, :metadata, :now)
ON CONFLICT (id) DO UPDATE
    SET event_type = excluded.event_type, title = excluded.title,
        description = excluded.description, starts_at = excluded.starts_at,
        ends_at = excluded.ends_at, action_label = excluded.action_label,
        action_href = excluded.action_href, is_active = TRUE,
        target_user_id = excluded.target_user_id, metadata = excluded.metadata
