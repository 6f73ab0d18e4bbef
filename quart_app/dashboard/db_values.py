"""Python values to and from the dialect's column types, so queries never branch on dialect.

PostgreSQL (asyncpg) takes and returns ``datetime``/``date`` objects and JSONB as JSON text.
SQLite stores timestamps as TEXT ``'YYYY-MM-DD HH:MM:SS'`` UTC (the ``CURRENT_TIMESTAMP``
format, which sorts as text) and dates as ``'YYYY-MM-DD'``; we pass strings, never datetime
objects (Python 3.12 deprecates the sqlite3 default adapters).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def db_time(db: Any, moment: datetime) -> datetime | str:
    """``moment`` as the parameter ``db`` (a :class:`~quart_app.db.Database`) expects."""
    moment = as_utc(moment)
    if db.dialect == "sqlite":
        # Not strftime: it writes year 999 as "999", which sorts after "2099" as text.
        return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    return moment


def db_date(db: Any, day: date) -> date | str:
    return day.isoformat() if db.dialect == "sqlite" else day


def from_db_time(value: Any) -> datetime | None:
    """A timestamp column's value (datetime or SQLite text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def iso(value: Any) -> str | None:
    """A timestamp column's value as ISO 8601 UTC with seconds, the same on every dialect."""
    moment = from_db_time(value)
    return None if moment is None else moment.isoformat(timespec="seconds")


def db_json(value: dict | None) -> str:
    """JSON text: TEXT on SQLite, ``CAST(:param AS JSONB)`` in the PostgreSQL query."""
    return json.dumps(value or {}, separators=(",", ":"), ensure_ascii=False)


def from_db_json(value: Any) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, (dict, list)):
        return value  # type: ignore[return-value]
    return json.loads(value)
