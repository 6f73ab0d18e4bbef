SELECT COUNT(*) FROM activity_feed WHERE is_global = TRUE AND id <= :cutoff
