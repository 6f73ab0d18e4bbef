DELETE FROM upcoming_events WHERE ends_at < :before
