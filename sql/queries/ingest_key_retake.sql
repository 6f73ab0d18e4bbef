-- A retry takes over a key whose attempt failed, or stalled (its process died mid-publish).
UPDATE ingest_keys SET state = 'publishing', updated_at = :now
WHERE key = :key AND (state = 'failed' OR (state = 'publishing' AND updated_at < :stale_before))
RETURNING key
