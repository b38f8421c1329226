"""What differs between SQLite and PostgreSQL, and nothing else: how to connect, how to write a
placeholder, how to take the write lock, how to lock a row, how to migrate once.

The store's SQL is written once, in SQLite's spelling (`?` placeholders, `INSERT … RETURNING id`,
`ON CONFLICT … DO NOTHING`, both of which PostgreSQL shares). A backend gives the store:

- `write()`: a transaction holding the database's one write lock (SQLite's `BEGIN IMMEDIATE`;
  on PostgreSQL a transaction-scoped advisory lock), yielding a `Tx` whose `execute(sql, params)`
  returns a cursor with `fetchone`, `fetchall`, `rowcount` and iteration. Multi-row writes are
  serialized on both databases, so an invariant that holds on one holds on the other.
- `execute`, `rows`, `value`: one statement on its own (autocommit), its rows materialized.
- `for_update`: the row-locking suffix (`FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write
  lock already covers the whole database), and `skip_locked` for the poller's claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlite_utils import Database

Params = Sequence[Any]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """What a write transaction offers: sqlite3's connection methods, on either database."""

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq: Sequence[Params], /) -> Any: ...


@dataclass
class Result:
    """One statement's outcome, read in full (its connection has gone back to the pool)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rowcount: int = -1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class Backend(Protocol):
    name: str
    description: str
    for_update: str
    skip_locked: str

    def write(self) -> AbstractContextManager[Tx]: ...

    def execute(self, sql: str, params: Params = ()) -> Result: ...

    def close(self) -> None: ...

    def migrate(self) -> list[str]: ...

    def pending_migrations(self) -> list[str]: ...


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0] in ("postgres", "postgresql")


def open_backend(target: str) -> Backend:
    """A PostgreSQL URL, a `sqlite:///` URL, or a plain SQLite path (":memory:" too)."""
    if is_postgres(target):
        return PostgresBackend(target)
    return SqliteBackend(target.removeprefix("sqlite:///"))


# ---------------------------------------------------------------- SQLite


class SqliteBackend:
    """One sqlite3 connection in WAL mode; `BEGIN IMMEDIATE` is the write lock."""

    name = "sqlite"
    for_update = ""
    skip_locked = ""

    def __init__(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.db = Database(conn)
        self.path = path
        self.description = f"SQLite file {path!r}" if path != ":memory:" else "SQLite in memory"
        # The connection is shared: threads take turns (the loop's and the store worker's).
        self.lock = threading.RLock()
        if path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # a failed COMMIT must not leave it open
                raise

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self.lock:
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall()
            return Result(rows, names, cursor.rowcount)

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Processes sharing one file migrate one at a time (a lock file beside it)."""
        if self.path == ":memory:":
            yield
            return
        with open(self.path + ".migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def migrate(self) -> list[str]:
        from bot.store.migrations import migrations

        with self.lock, self._migration_lock():
            pending = [m.name for m in migrations.pending(self.db)]
            migrations.apply(self.db)
        return pending

    def pending_migrations(self) -> list[str]:
        from bot.store.migrations import migrations

        with self.lock:
            return [m.name for m in migrations.pending(self.db)]


# ---------------------------------------------------------------- PostgreSQL


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    """A psycopg connection inside a transaction, spoken to with `?` placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = (), /) -> Cursor:
        cursor: Cursor = self._conn.execute(to_pyformat(sql), params)
        return cursor

    def executemany(self, sql: str, seq: Sequence[Params], /) -> Any:
        with self._conn.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), seq)


def _lock_key(label: str, schema: str) -> int:
    """A 63-bit advisory lock key for this purpose in this schema (tests share one server)."""
    digest = hashlib.sha256(f"motion-bot:{label}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class PostgresBackend:
    """psycopg 3 over a `psycopg_pool.ConnectionPool`; autocommit outside `write()`."""

    name = "postgresql"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, worker_slots: int = 8) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        if url.startswith("postgres://"):  # Heroku's spelling; libpq takes both, be explicit
            url = "postgresql://" + url.removeprefix("postgres://")
        self.url = url
        parts = urlsplit(url)
        self.description = f"PostgreSQL {parts.hostname or 'localhost'}{parts.path or ''}"
        self._psycopg = psycopg

        def configure(conn: Any) -> None:
            # A statement waiting on another instance's lock gives up instead of hanging the app.
            conn.execute("SET lock_timeout = '5s'")
            conn.execute("SET statement_timeout = '15s'")

        # The store's worker threads (offloop.py) each may hold one connection; two more are
        # kept for the synchronous calls made on the event loop, so those never wait for a
        # worker to give one back.
        self.worker_slots = worker_slots
        self._writing = threading.RLock()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=worker_slots + 2,
            kwargs={"autocommit": True},
            configure=configure,
            open=False,
            name="motion-bot",
        )
        self.pool.open(wait=True, timeout=15)
        schema = str(self.execute("SELECT current_schema()").rows[0][0])
        self.schema = schema
        self.write_key = _lock_key("write", schema)
        self.migrate_key = _lock_key("migrate", schema)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        # This instance's threads queue here first, so at most one of them waits on the
        # advisory lock (holding a connection and a server process): the others wait without
        # tying up the pool. Measured under a burst of 200 commands (bench/ack.py).
        # BEGIN and the lock in one round trip (no parameters, so psycopg sends both in one
        # simple query; the key is an integer this class computed): every write pays it.
        with self._writing, self.pool.connection() as conn:
            try:  # a lock that times out (lock_timeout) leaves BEGIN open: rolled back below
                conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(self.write_key)})")
                yield _PgTx(conn)
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self.pool.connection() as conn:
            cursor = conn.execute(to_pyformat(sql), params)
            # The names straight from the result: `cursor.description` builds a Column object
            # per column per call, which cost more than the rest of a `SELECT *` (profiled).
            result = cursor.pgresult
            if result is None or not result.nfields:
                return Result([], [], cursor.rowcount)
            names = [result.fname(i).decode() for i in range(result.nfields)]
            return Result(cursor.fetchall(), names, cursor.rowcount)

    def migrate(self) -> list[str]:
        """Every pending migration in one transaction, under an advisory lock: instances that
        start together wait for the first, then find nothing left to do."""
        from bot.store.migrations import MIGRATION_SET, postgres_migrations

        applied: list[str] = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.migrate_key,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (migration_set text NOT NULL,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (migration_set, name))"
            )
            done = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM schema_migrations WHERE migration_set = %s",
                    (MIGRATION_SET,),
                )
            }
            for name, statements in postgres_migrations():
                if name in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (migration_set, name) VALUES (%s, %s)",
                    (MIGRATION_SET, name),
                )
                applied.append(name)
        return applied

    def pending_migrations(self) -> list[str]:
        from bot.store.migrations import MIGRATION_SET, postgres_migrations

        exists = self.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").rows[0][0]
        done = (
            {
                r[0]
                for r in self.execute(
                    "SELECT name FROM schema_migrations WHERE migration_set = ?", (MIGRATION_SET,)
                ).rows
            }
            if exists
            else set()
        )
        return [name for name, _ in postgres_migrations() if name not in done]
