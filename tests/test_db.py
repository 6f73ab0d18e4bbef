import pytest

from quart_app.dashboard.db import Database, load_sql, migrate, split_statements


async def test_migrate_twice_is_idempotent(backend):
    db = Database(backend["database_url"].replace("postgresql+asyncpg", "postgresql"))
    await db.connect()
    try:
        first = await migrate(db)
        second = await migrate(db)
        assert first == ["001_core.sql", "002_gamification.sql", "003_dashboard.sql",
                         "004_ingest_keys.sql"]
        assert second == []
        rows = await db.raw.fetch_all("SELECT name FROM schema_migrations ORDER BY name")
        assert [r._mapping["name"] for r in rows] == first
        for table in ("users", "workers", "gamification_state", "badges", "user_badges",
                      "leaderboard_scores", "activity_feed", "upcoming_events", "ingest_keys"):
            assert await db.raw.fetch_val(f"SELECT COUNT(*) FROM {table}") == 0
    finally:
        await db.close()


def test_split_statements_ignores_comments():
    assert split_statements("-- c\nCREATE TABLE a (x INT);\n\nCREATE INDEX i ON a(x);\n") == [
        "CREATE TABLE a (x INT)", "CREATE INDEX i ON a(x)"]


def test_unknown_query_name():
    with pytest.raises(KeyError, match="no SQL query"):
        load_sql("does_not_exist", "sqlite")


async def test_foreign_keys_hold_on_every_query_and_connections_are_reused(backend):
    """Both backends refuse a row that points at no user. On SQLite that needs the pragma on
    every connection: `databases` alone opened one per query and set it on the first only."""
    from sqlalchemy.exc import IntegrityError as SAIntegrityError
    import sqlite3

    import asyncpg

    db = Database(backend["database_url"].replace("postgresql+asyncpg", "postgresql"))
    await db.connect()
    try:
        await migrate(db)
        for _ in range(20):
            assert await db.raw.fetch_val("SELECT 1") == 1
        with pytest.raises((sqlite3.IntegrityError, asyncpg.ForeignKeyViolationError,
                            SAIntegrityError)):
            await db.raw.execute(
                "INSERT INTO workers (user_id, name) VALUES (:u, :n)",
                {"u": 987654321, "n": "orphan"})
        assert await db.raw.fetch_val(
            "SELECT COUNT(*) FROM workers WHERE user_id = 987654321") == 0
        if db.dialect == "sqlite":
            # 20 queries and more, sequential: one connection opened, kept, reused.
            assert db._pool is not None and db._pool.opened == 1
    finally:
        await db.close()
    if db.dialect == "sqlite":
        assert not db._pool._idle
