-- Keys are remembered for a day (the documented retry window).
DELETE FROM ingest_keys WHERE updated_at < :before
