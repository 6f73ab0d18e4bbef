UPDATE ingest_keys SET plan = :plan WHERE key = :key
