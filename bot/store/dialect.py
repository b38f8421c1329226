"""What differs between SQLite and PostgreSQL, and nothing else: how to connect, how to write a
placeholder, how to take the write lock, how to lock a row, how to migrate once.

The store's SQL is written once, in SQLite's spelling (`?` placeholders, `INSERT … RETURNING id`,
`ON CONFLICT … DO NOTHING`, both of which PostgreSQL shares). A backend gives the store:

- `write()`: a transaction holding the database's one write lock (SQLite's `BEGIN IMMEDIATE`;
  on PostgreSQL a transaction-scoped advisory lock), yielding a `Tx` whose `execute(sql, params)`
  returns a cursor with `fetchone`, `fetchall`, `rowcount` and iteration. Multi-row writes are
  serialized on both databases, so an invariant that holds on one holds on the other.
  `write(exclusive=False)`: the same without PostgreSQL's advisory lock, for a write whose
  invariants unique keys, CHECKs and row locks keep by themselves (a new job: bot/store/
  jobs.py); SQLite has no lighter lock than its one.
- `one_statement_inserts`: True on PostgreSQL, whose data-modifying `WITH` lets rows that
  refer to one another be inserted by one statement (one round trip, ~100 µs of CPU against
  ~450 for the same as a transaction of statements); SQLite has no such thing, and no round
  trips to save (bot/store/jobs.py `create_job` writes either way).
- `last_id(table)`: the id just given to a row inserted into `table` (its identity's `currval`
  / `last_insert_rowid()`), so a row can refer to the one inserted just before it without
  reading it back. On SQLite it is the latest insert's, whatever the table: nothing may be
  inserted in between.
- `ConstraintViolated`: a unique key or a CHECK refused a statement; the transaction is rolled
  back whole, and the error says which table or constraint.
- `execute`, `rows`, `value`: one statement on its own (autocommit), its rows materialized.
- `for_update`: the row-locking suffix (`FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write
  lock already covers the whole database), and `skip_locked` for the poller's claim.

Every call waits on the database at most as long as its caller can afford (`Availability.
patience`, bot/store/availability.py), and a failure for want of the database (no connection,
a lock held elsewhere past that time) is raised as `DatabaseUnavailable`, the transaction
rolled back; the backend's own errors of any other kind pass through as they are.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlite_utils import Database

from bot.store.availability import (
    LOOP_SECONDS,
    Availability,
    DatabaseUnavailable,
    Reason,
)

Params = Sequence[Any]
log = logging.getLogger(__name__)


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


class ConstraintViolated(Exception):
    """A statement broke a constraint; its whole transaction was rolled back. `kind`: "unique"
    (`where` is the table) or "check" (`where` is the constraint's name)."""

    def __init__(self, kind: str, where: str, detail: str) -> None:
        super().__init__(f"{kind} constraint on {where}: {detail}")
        self.kind = kind
        self.where = where


class Backend(Protocol):
    name: str
    description: str
    for_update: str
    skip_locked: str
    one_statement_inserts: bool
    availability: Availability

    def last_id(self, table: str) -> str: ...

    def write(self, *, exclusive: bool = True) -> AbstractContextManager[Tx]: ...

    def execute(self, sql: str, params: Params = ()) -> Result: ...

    def close(self) -> None: ...

    def migrate(self) -> list[str]: ...

    def pending_migrations(self) -> list[str]: ...

    def probe(self) -> None: ...

    def checkpoint(self) -> None: ...


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0] in ("postgres", "postgresql")


def open_backend(target: str) -> Backend:
    """A PostgreSQL URL, a `sqlite:///` URL, or a plain SQLite path (":memory:" too)."""
    if is_postgres(target):
        return PostgresBackend(target)
    return SqliteBackend(target.removeprefix("sqlite:///"))


# ---------------------------------------------------------------- SQLite


# Set while a call known to only read runs (`reading`): its statements go to the backend's
# reading connection, where it has one (SQLite on a file).
_reading: contextvars.ContextVar[bool] = contextvars.ContextVar("store_reading", default=False)


@contextmanager
def reading() -> Iterator[None]:
    """Statements run in this context only read: SQLite sends them to its reading connection,
    which WAL lets go on while another connection (or process) holds the write lock."""
    token = _reading.set(True)
    try:
        yield
    finally:
        _reading.reset(token)


class SqliteBackend:
    """One sqlite3 connection in WAL mode for writes, where `BEGIN IMMEDIATE` is the write lock,
    and (for a file) a second one that only reads (`query_only`), for the lookups a request
    makes: WAL lets a reader go on beside a writer, so a `/motion usage` is answered while the
    writing connection waits for another process's lock.

    Waiting, bounded by each call's patience: for a connection itself (`lock` / `read_lock`,
    which the loop's thread and the store's workers take in turns) and, through
    `busy_timeout`, for another connection's or process's lock on the file."""

    name = "sqlite"
    for_update = ""
    skip_locked = ""
    one_statement_inserts = False

    @staticmethod
    def last_id(table: str) -> str:
        return "last_insert_rowid()"

    def __init__(self, path: str) -> None:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=MIGRATION_SECONDS
        )
        self.db = Database(conn)
        self.path = path
        self.description = f"SQLite file {path!r}" if path != ":memory:" else "SQLite in memory"
        self.availability = Availability(self.description)
        # The connection is shared: threads take turns (the loop's and the store worker's).
        self.lock = threading.RLock()
        if path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Freed space is overwritten with zeros: a deleted row (a forgotten workspace's) and the
        # old copy an UPDATE leaves behind never linger in the file's free pages or cells.
        self.db.execute("PRAGMA secure_delete=ON")
        # Opening and migrating may wait for another process's write (a backup, another
        # instance starting); every call after that waits its own budget (`_connection`).
        self.db.execute("PRAGMA foreign_keys=ON")
        self._writer = _Shared(self.db.conn, self.lock, int(MIGRATION_SECONDS * 1000))
        self.reader: _Shared | None = None
        self.read_lock: threading.RLock | None = None
        if path != ":memory:":  # another connection to ":memory:" would be another database
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=ON")
            self.read_lock = threading.RLock()
            self.reader = _Shared(reader, self.read_lock, 0)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.conn.close()
        self.db.close()

    @contextmanager
    def _connection(self, *, read: bool = False) -> Iterator[sqlite3.Connection]:
        """A shared connection (the reading one for a statement in `reading()`, where there
        is one), had within the call's patience, its busy_timeout set to what is left of it."""
        shared = self.reader if read and self.reader is not None and _reading.get() else None
        shared = shared or self._writer
        wait = self.availability.patience()
        began = time.monotonic()
        if not shared.lock.acquire(timeout=wait):
            raise self.availability.failed(
                DatabaseUnavailable(Reason.BUSY, f"the SQLite connection was busy for {wait:.1f} s")
            )
        try:
            left_ms = max(0, int((wait - (time.monotonic() - began)) * 1000))
            if left_ms != shared.busy_ms:  # a PRAGMA costs microseconds: only when it changes
                shared.conn.execute(f"PRAGMA busy_timeout={left_ms}")
                shared.busy_ms = left_ms
            yield shared.conn
        finally:
            shared.lock.release()

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        """A lock held elsewhere past the budget, or the file out of reach; None otherwise."""
        if not isinstance(exc, sqlite3.OperationalError):
            return None
        code = (exc.sqlite_errorcode or 0) & 0xFF
        if code in _SQLITE_LOCKED:
            reason = Reason.LOCKED
        elif code in _SQLITE_UNREACHABLE:
            reason = Reason.UNREACHABLE
        else:
            return None
        return self.availability.failed(DatabaseUnavailable(reason, str(exc)))

    @contextmanager
    def write(self, *, exclusive: bool = True) -> Iterator[Tx]:
        """`BEGIN IMMEDIATE` whether `exclusive` or not: SQLite's one lock is the file's."""
        with self._connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")  # a failed COMMIT must not leave it open
                    raise
            except sqlite3.OperationalError as exc:
                if (unavailable := self._unavailable(exc)) is not None:
                    raise unavailable from exc
                raise
            except sqlite3.IntegrityError as exc:
                if (violation := _sqlite_violation(exc)) is not None:
                    raise violation from exc
                raise
        self.availability.succeeded(wrote=True)

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self._connection(read=True) as conn:
            changes = conn.total_changes
            try:
                cursor = conn.execute(sql, params)
                names = [d[0] for d in cursor.description] if cursor.description else []
                rows = cursor.fetchall()
            except sqlite3.OperationalError as exc:
                if (unavailable := self._unavailable(exc)) is not None:
                    raise unavailable from exc
                raise
            wrote = conn.total_changes != changes
        self.availability.succeeded(wrote=wrote)
        return Result(rows, names, cursor.rowcount)

    def probe(self) -> None:
        """`/healthz`'s look: a read, or while an outage that began with a lock lasts, an empty
        write (another process's write lock does not stop reads)."""
        if self.availability.needs_write:
            with self.write():
                return
        self.execute("SELECT 1")

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it, so pages with deleted rows (zeroed in
        the file by `secure_delete`) do not survive in the WAL either. Another connection
        reading at that moment keeps the WAL: logged, and the next checkpoint finishes it."""
        with self._connection() as conn:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("the WAL checkpoint was held up by another reader; it will come again")

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


MIGRATION_SECONDS = 30.0  # SQLite: the longest opening the file and migrating it may wait


@dataclass
class _Shared:
    """One sqlite3 connection the loop's thread and the store's workers take turns on."""

    conn: sqlite3.Connection
    lock: threading.RLock
    busy_ms: int  # its busy_timeout now (set again only when a call's patience differs)


class _SqliteTx:
    """The sqlite3 connection inside a write transaction. Each statement's rows are read at
    once, so results stay readable after the transaction, as on PostgreSQL (and a statement
    with RETURNING is finished before COMMIT, which SQLite requires); a broken unique key or
    CHECK is a `ConstraintViolated` right at its statement."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = (), /) -> Cursor:
        try:
            cursor = self._conn.execute(sql, params)
            rows = cursor.fetchall()
        except sqlite3.IntegrityError as exc:
            if (violation := _sqlite_violation(exc)) is not None:
                raise violation from exc
            raise
        return Result(rows, [], cursor.rowcount)

    def executemany(self, sql: str, seq: Sequence[Params], /) -> Any:
        self._conn.executemany(sql, seq)


def _sqlite_violation(exc: sqlite3.IntegrityError) -> ConstraintViolated | None:
    """SQLite's words for a broken constraint ("UNIQUE constraint failed: events.key", "CHECK
    constraint failed: usage_within_cap") as a `ConstraintViolated`; None for any other
    integrity error (a foreign key, NOT NULL)."""
    text = str(exc)
    for kind in ("unique", "check"):
        prefix = f"{kind.upper()} constraint failed: "
        if text.startswith(prefix):
            where = text.removeprefix(prefix).split(",")[0].strip()
            return ConstraintViolated(
                kind, where.split(".")[0] if kind == "unique" else where, text
            )
    return None


# SQLite's primary result codes: another connection's lock (BUSY, LOCKED, PROTOCOL), or the
# file out of reach for now (IOERR, FULL, CANTOPEN).
_SQLITE_LOCKED = {5, 6, 15}
_SQLITE_UNREACHABLE = {10, 13, 14}


# ---------------------------------------------------------------- PostgreSQL


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    """A psycopg connection inside a transaction, spoken to with `?` placeholders. Each
    statement's rows are read at once, as on SQLite, so results stay readable after the
    transaction, when the connection is back in the pool."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = (), /) -> Cursor:
        try:
            cursor = self._conn.execute(to_pyformat(sql), params)
        except Exception as exc:
            if (violation := _pg_violation(exc)) is not None:
                raise violation from exc
            raise
        result = cursor.pgresult
        rows = cursor.fetchall() if result is not None and result.nfields else []
        return Result(rows, [], cursor.rowcount)

    def executemany(self, sql: str, seq: Sequence[Params], /) -> Any:
        with self._conn.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), seq)


def _pg_violation(exc: BaseException) -> ConstraintViolated | None:
    """psycopg's unique and check violations as a `ConstraintViolated`; None for any other."""
    diag = getattr(exc, "diag", None)
    state = getattr(exc, "sqlstate", None)
    if diag is None or state not in ("23505", "23514"):
        return None
    if state == "23505":
        return ConstraintViolated("unique", diag.table_name or "", str(exc))
    return ConstraintViolated("check", diag.constraint_name or "", str(exc))


def _lock_key(label: str, schema: str) -> int:
    """A 63-bit advisory lock key for this purpose in this schema (tests share one server)."""
    digest = hashlib.sha256(f"motion-bot:{label}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class PostgresBackend:
    """psycopg 3 over a `psycopg_pool.ConnectionPool`; autocommit outside `write()`.

    A restart or failover cuts every connection: a statement on a cut connection fails at once
    (`DatabaseUnavailable`), the pool drops that connection and opens new ones as soon as the
    server answers again (the health probe also has the pool check its idle connections while
    an outage lasts, so none left from before is handed out after it). Waits are bounded by
    each call's patience: the pool's checkout timeout, this instance's queue for the write
    lock, and `lock_timeout` / `statement_timeout` set for the transaction with its `BEGIN`
    (a statement on its own: the session's `lock_timeout` of 0.5 s, never longer than any
    caller's budget, and `statement_timeout` 15 s against a runaway query)."""

    name = "postgresql"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    one_statement_inserts = True

    @staticmethod
    def last_id(table: str) -> str:
        """Not `lastval()`: an insert's own identity is drawn before its values are read."""
        return f"currval(pg_get_serial_sequence('{table}', 'id'))"

    def __init__(self, url: str, *, worker_slots: int = 8) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        if url.startswith("postgres://"):  # Heroku's spelling; libpq takes both, be explicit
            url = "postgresql://" + url.removeprefix("postgres://")
        self.url = url
        parts = urlsplit(url)
        self.description = f"PostgreSQL {parts.hostname or 'localhost'}{parts.path or ''}"
        self.availability = Availability(self.description)
        self._psycopg = psycopg

        def configure(conn: Any) -> None:
            # A statement on its own waiting on another session's lock gives up within any
            # caller's budget (the shortest: a call on the event loop's) instead of hanging the
            # app; `write()` sets its transaction's own. One round trip for both.
            conn.execute(
                f"SET lock_timeout = {int(LOOP_SECONDS * 1000)}; SET statement_timeout = '15s'"
            )

        # The store's worker threads (offloop.py) each may hold one connection; two more are
        # kept for the synchronous calls made on the event loop, so those never wait for a
        # worker to give one back.
        self.worker_slots = worker_slots
        self._writing = threading.RLock()
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in url:  # a server gone mid-failover is not waited on for long
            kwargs["connect_timeout"] = 5
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=worker_slots + 2,
            kwargs=kwargs,
            configure=configure,
            open=False,
            name="motion-bot",
            # The pool retries a cut connection with a doubling delay, so after a long outage
            # its next try could come as long again after the server is back (measured: 9 s
            # after a 20-s outage). Given up after 5 s, a slot is opened again at the next
            # checkout instead (measured: back within 1.5 s of the server, whatever the outage).
            reconnect_timeout=5.0,
        )
        self.pool.open(wait=True, timeout=15)
        schema = str(self.execute("SELECT current_schema()").rows[0][0])
        self.schema = schema
        self.write_key = _lock_key("write", schema)
        self.migrate_key = _lock_key("migrate", schema)

    def close(self) -> None:
        self.pool.close()

    def _unavailable(self, exc: Exception) -> DatabaseUnavailable:
        """What an OperationalError (psycopg's, and the pool's timeout) says of the database."""
        errors = self._psycopg.errors
        if isinstance(exc, errors.LockNotAvailable | errors.TransactionRollback):
            reason = Reason.LOCKED
        elif isinstance(exc, errors.QueryCanceled):
            reason = Reason.TIMED_OUT
        else:
            reason = Reason.UNREACHABLE
        first_line = (str(exc).strip().splitlines() or [""])[0]
        detail = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        return self.availability.failed(DatabaseUnavailable(reason, detail))

    @contextmanager
    def write(self, *, exclusive: bool = True) -> Iterator[Tx]:
        """A transaction; `exclusive`: holding the write lock, which this instance's threads queue for first, so at most one of them
        waits on the advisory lock (holding a connection and a server process) while the others
        wait without tying up the pool (measured under a burst of 200 commands,
        bench/ack.py). Without it, only the pool's checkout is waited for."""
        wait = self.availability.patience()
        began = time.monotonic()
        if exclusive and not self._writing.acquire(timeout=wait):
            raise self.availability.failed(
                DatabaseUnavailable(Reason.BUSY, f"this instance's writes queued for {wait:.1f} s")
            )
        try:
            with self.pool.connection(timeout=_left(wait, began)) as conn:
                yield from self._transaction(
                    conn, max(1, int(_left(wait, began) * 1000)), exclusive
                )
        except self._psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except self._psycopg.IntegrityError as exc:
            if (violation := _pg_violation(exc)) is not None:
                raise violation from exc
            raise
        finally:
            if exclusive:
                self._writing.release()
        self.availability.succeeded(wrote=True)

    def _transaction(self, conn: Any, ms: int, exclusive: bool) -> Iterator[Tx]:
        """BEGIN, the time the transaction may wait and (when `exclusive`) the lock in one
        round trip (no parameters, so psycopg sends them as one simple query; every value is
        a number computed here); the caller's statements; COMMIT; rolled back on any failure.
        (statement_timeout a little later than lock_timeout: a wait on a lock is told as such.)
        Measured and left out: psycopg's pipeline mode, which cost more CPU per statement
        (~70 µs) than the round trips it saves over a local socket (bench/ack.py)."""
        lock = f" SELECT pg_advisory_xact_lock({int(self.write_key)})" if exclusive else ""
        try:  # a lock that times out leaves BEGIN open: rolled back below
            conn.execute(
                f"BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms + 50};"
                + lock
            )
            yield _PgTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                conn.execute("ROLLBACK")
            raise

    def execute(self, sql: str, params: Params = ()) -> Result:
        wait = self.availability.patience()
        try:
            with self.pool.connection(timeout=wait) as conn:
                cursor = conn.execute(to_pyformat(sql), params)
                # The names straight from the result: `cursor.description` builds a Column
                # object per column per call, which cost more than the rest of a `SELECT *`.
                result = cursor.pgresult
                if result is None or not result.nfields:
                    found = Result([], [], cursor.rowcount)
                else:
                    names = [result.fname(i).decode() for i in range(result.nfields)]
                    found = Result(cursor.fetchall(), names, cursor.rowcount)
                status = result.command_status if result is not None else None
        except self._psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except self._psycopg.IntegrityError as exc:
            if (violation := _pg_violation(exc)) is not None:
                raise violation from exc
            raise
        self.availability.succeeded(wrote=not (status or b"SELECT").startswith(b"SELECT"))
        return found

    def checkpoint(self) -> None:
        """Nothing: PostgreSQL keeps deleted rows as dead tuples until VACUUM (autovacuum, or
        the operator's; docs/operations.md), never in a file the app can scrub."""

    def probe(self) -> None:
        """`/healthz`'s look. During an outage the pool first checks its idle connections
        (dropping those the outage cut), and an outage that began with a lock is over only
        when a write can take the write lock again."""
        if self.availability.away:
            with contextlib.suppress(Exception):
                self.pool.check()
        if self.availability.needs_write:
            with self.write():
                return
        self.execute("SELECT 1")

    def migrate(self) -> list[str]:
        """Every pending migration in one transaction, under an advisory lock: instances that
        start together wait for the first, then find nothing left to do."""
        from bot.store.migrations import MIGRATION_SET, postgres_migrations

        applied: list[str] = []
        with self.pool.connection() as conn, conn.transaction():
            # Migrating may wait for another instance's migration, and may take long itself.
            conn.execute("SET LOCAL lock_timeout = '5min'; SET LOCAL statement_timeout = 0")
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


def _left(wait: float, began: float) -> float:
    """What is left of `wait` seconds since `began` (never quite nothing: the pool reads 0 as
    its own default)."""
    return max(0.001, wait - (time.monotonic() - began))
