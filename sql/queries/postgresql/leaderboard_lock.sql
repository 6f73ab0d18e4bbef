-- One re-rank of a category at a time, until the transaction ends.
SELECT pg_advisory_xact_lock(727002, hashtext(:category))
