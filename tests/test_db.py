import pytest

from quart_app.db import Database, load_sql, migrate, split_statements


async def test_migrate_twice_is_idempotent(backend):
    db = Database(backend["database_url"].replace("postgresql+asyncpg", "postgresql"))
    await db.connect()
    try:
        first = await migrate(db)
        second = await migrate(db)
        assert first == ["001_core.sql", "002_gamification.sql", "003_dashboard.sql"][:len(first)]
        assert len(first) >= 3 and second == []
        rows = await db.raw.fetch_all("SELECT name FROM schema_migrations ORDER BY name")
        assert [r._mapping["name"] for r in rows] == first
        for table in ("users", "workers", "gamification_state", "badges", "user_badges",
                      "leaderboard_scores", "activity_feed", "upcoming_events"):
            assert await db.raw.fetch_val(f"SELECT COUNT(*) FROM {table}") == 0
    finally:
        await db.close()


def test_split_statements_ignores_comments():
    assert split_statements("-- c\nCREATE TABLE a (x INT);\n\nCREATE INDEX i ON a(x);\n") == [
        "CREATE TABLE a (x INT)", "CREATE INDEX i ON a(x)"]


def test_unknown_query_name():
    with pytest.raises(KeyError, match="no SQL query"):
        load_sql("does_not_exist", "sqlite")
