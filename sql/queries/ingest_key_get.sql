SELECT key, body_hash, state, plan, published, answer, updated_at
FROM ingest_keys
WHERE key = :key
