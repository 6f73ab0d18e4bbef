"""The database: `databases` (asyncpg or aiosqlite), SQL loaded by name from ``sql/``, migrations.

Queries live in ``sql/queries/<name>.sql`` (one statement, named ``:params``); where a dialect
needs its own text it lives in ``sql/queries/<dialect>/<name>.sql`` and wins. Schema files live in
``sql/<dialect>/NNN_*.sql`` and are applied in order by :func:`migrate`, each once, recorded in the
``schema_migrations`` table.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, Callable, Mapping, NamedTuple

from databases import Database as _Database

from ..errors import ServiceUnavailable
from ..resources import schema_files, sql_dir

log = logging.getLogger("pulse.db")

_DB_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError)


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError]
    try:
        import asyncpg

        errors += [asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                   asyncpg.CannotConnectNowError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


@lru_cache(maxsize=None)
def load_sql(name: str, dialect: str) -> str:
    """Return the text of query ``name`` for ``dialect``; KeyError if there is none."""
    queries = sql_dir() / "queries"
    for path in (queries / dialect / f"{name}.sql", queries / f"{name}.sql"):
        if path.is_file():
            return path.read_text()
    raise KeyError(f"no SQL query named {name!r} for {dialect}")


def split_statements(text: str) -> list[str]:
    """Split a schema file on ``;`` at line ends (schema files hold no procedural bodies)."""
    statements, current = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or not stripped:
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


# Per connection: SQLite leaves foreign keys off unless asked, on every connection.
# WAL + NORMAL: no fsync per commit, still never corrupt (the SQLite docs' advice).
SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL",
                  "PRAGMA busy_timeout=5000")


class SQLitePool:
    """Keeps SQLite connections open for reuse.

    `databases` opens a new aiosqlite connection, and with it a new thread, for every query
    outside a transaction, and closes it afterwards; per-connection settings (foreign keys) were
    thus lost after the first query. This pool sets them on each connection it opens, and keeps
    up to ``keep`` idle ones (outside any transaction) for the next caller.
    """

    def __init__(self, opener: Any, keep: int = 4) -> None:
        self._opener = opener  # databases' own pool: acquire() opens, release() closes
        self._keep = keep
        self._idle: list[Any] = []
        self.opened = 0

    async def acquire(self) -> Any:
        if self._idle:
            return self._idle.pop()
        connection = await self._opener.acquire()
        try:
            for pragma in SQLITE_PRAGMAS:
                await connection.execute(pragma)
        except BaseException:
            await self._opener.release(connection)
            raise
        self.opened += 1
        return connection

    async def release(self, connection: Any) -> None:
        if len(self._idle) < self._keep and not connection.in_transaction:
            self._idle.append(connection)
        else:
            await self._opener.release(connection)

    async def close(self) -> None:
        while self._idle:
            await self._opener.release(self._idle.pop())

    @property
    def _memref(self) -> Any:  # read and cleared by databases' SQLiteBackend.disconnect
        return self._opener._memref

    @_memref.setter
    def _memref(self, value: Any) -> None:
        self._opener._memref = value


_ALL, _ONE, _VAL, _NONE = range(4)


class _Plan(NamedTuple):
    sql: str                                     # the driver's text: $n (asyncpg) or ? (sqlite)
    keys: tuple[str, ...]                        # the values, in placeholder order
    processors: tuple[Callable[[Any], Any] | None, ...]


def _compile(sa_dialect: Any, dialect: str, sql: str, values: dict) -> _Plan:
    """What `databases`' backends do per call (``_compile``), once per text and value types."""
    from sqlalchemy import text

    compiled = text(sql).bindparams(**values).compile(
        dialect=sa_dialect, compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors
    if dialect == "postgresql":
        keys = tuple(sorted(compiled.params))
        driver_sql = compiled.string % {key: f"${i}" for i, key in enumerate(keys, start=1)}
    else:
        keys = tuple(compiled.positiontup)
        driver_sql = compiled.string
    return _Plan(driver_sql, keys, tuple(processors.get(key) for key in keys))


async def _run_asyncpg(raw: Any, want: int, sql: str, args: list) -> Any:
    if want == _ALL:
        return [dict(row) for row in await raw.fetch(sql, *args)]
    if want == _NONE:
        await raw.execute(sql, *args)
        return None
    row = await raw.fetchrow(sql, *args)
    if row is None:
        return None
    return dict(row) if want == _ONE else row[0]


async def _run_aiosqlite(raw: Any, want: int, sql: str, args: list) -> Any:
    async with raw.execute(sql, args) as cursor:
        if want == _NONE:
            return None
        rows = await cursor.fetchall() if want == _ALL else [await cursor.fetchone()]
        if want != _ALL and rows[0] is None:
            return None
        if want == _VAL:
            return rows[0][0]
        names = [column[0] for column in cursor.description]
        found = [dict(zip(names, row)) for row in rows]
        return found if want == _ALL else found[0]


class Database:
    """A thin wrapper: run named queries, map connection failures to 503."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._db = _Database(url)
        self._errors = _db_errors()
        self._pool: SQLitePool | None = None
        self._plans: dict[tuple, _Plan] = {}
        if self.dialect == "sqlite":
            backend = self._db._backend
            self._pool = backend._pool = SQLitePool(backend._pool)

    async def connect(self) -> None:
        await self._db.connect()
        if self.dialect == "sqlite":
            # WAL (kept in the file) lets the demo simulator write while REST reads.
            await self._db.execute("PRAGMA journal_mode=WAL")

    async def close(self) -> None:
        try:
            if self._db.is_connected:
                await self._db.disconnect()
        finally:
            if self._pool is not None:  # its threads would keep the process from exiting
                await self._pool.close()

    def sql(self, name: str) -> str:
        return load_sql(name, self.dialect)

    async def fetch_all(self, name: str, values: Mapping[str, Any] | None = None) -> list[dict]:
        return await self._query(_ALL, name, values)

    async def fetch_one(self, name: str, values: Mapping[str, Any] | None = None) -> dict | None:
        return await self._query(_ONE, name, values)

    async def fetch_val(self, name: str, values: Mapping[str, Any] | None = None) -> Any:
        return await self._query(_VAL, name, values)

    async def execute(self, name: str, values: Mapping[str, Any] | None = None) -> None:
        await self._query(_NONE, name, values)

    async def _query(self, want: int, name: str, values: Mapping[str, Any] | None) -> Any:
        """Run a named query on the task's connection (inside its transaction, if any).

        `databases` builds and compiles a SQLAlchemy ``text()`` clause on every call: about half
        of the CPU of an ingested event. The compiled form depends only on the text and the
        values' types, so it is compiled once (by the same SQLAlchemy calls, with the same bind
        processors) and the driver is called with it.
        """
        sql = self.sql(name)
        values = dict(values) if values else {}
        plan = self._plan(sql, values)
        connection = self._db.connection()
        try:
            async with connection:
                async with connection._query_lock:  # as `databases` serialises a connection
                    raw = connection.raw_connection
                    args = [values[key] if process is None else process(values[key])
                            for key, process in zip(plan.keys, plan.processors)]
                    if self.dialect == "postgresql":
                        return await _run_asyncpg(raw, want, plan.sql, args)
                    return await _run_aiosqlite(raw, want, plan.sql, args)
        except self._errors as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(f"Database unavailable: {type(exc).__name__}") from exc

    def _plan(self, sql: str, values: dict) -> "_Plan":
        key = (sql, tuple(sorted((k, type(v)) for k, v in values.items())))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _compile(self._db._backend._dialect, self.dialect, sql,
                                               values)
        return plan

    def transaction(self):
        return self._db.transaction()

    async def ping(self) -> None:
        await self._run(self._db.fetch_val, "SELECT 1", None)

    async def _run(self, fn, query: str, values: Mapping[str, Any] | None) -> Any:
        try:
            return await fn(query=query, values=dict(values) if values else None)
        except self._errors as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(f"Database unavailable: {type(exc).__name__}") from exc

    @property
    def raw(self) -> _Database:
        """The underlying `databases.Database`, for migrations and tests only."""
        return self._db


async def migrate(db: Database) -> list[str]:
    """Apply the dialect's schema files not yet recorded; return the names applied now.

    One transaction; on PostgreSQL an advisory lock serialises processes that start together.
    """
    raw = db.raw
    applied = []
    async with raw.transaction():
        if db.dialect == "postgresql":
            await raw.execute("SELECT pg_advisory_xact_lock(727001)")
        await raw.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name VARCHAR(255) PRIMARY KEY,"
            " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        rows = await raw.fetch_all("SELECT name FROM schema_migrations")
        done = {row._mapping["name"] for row in rows}
        for path in schema_files(db.dialect):
            if path.name in done:
                continue
            for statement in split_statements(path.read_text()):
                await raw.execute(statement)
            await raw.execute(
                "INSERT INTO schema_migrations (name) VALUES (:name)", {"name": path.name})
            applied.append(path.name)
            log.info("applied migration %s", path.name)
    return applied
