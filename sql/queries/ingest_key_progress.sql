UPDATE ingest_keys SET state = :state, published = :published, answer = :answer, updated_at = :now
WHERE key = :key
