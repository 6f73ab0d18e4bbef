-- The first request with this key claims it; a repeat gets no row.
INSERT INTO ingest_keys (key, body_hash, state, updated_at)
VALUES (:key, :body_hash, 'publishing', :now)
ON CONFLICT (key) DO NOTHING
RETURNING key
