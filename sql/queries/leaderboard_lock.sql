-- SQLite serialises writers already; this only names the parameter the PostgreSQL text uses.
SELECT 1 WHERE :category IS NOT NULL
