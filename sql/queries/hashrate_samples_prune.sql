-- Stats read the last 24 hours only.
DELETE FROM hashrate_samples WHERE sampled_at < :before
