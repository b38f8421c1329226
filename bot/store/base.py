"""The one database object the store's repositories share, its one way to write, and the lease
fence.

`Database` holds the backend (SQLite or PostgreSQL), who this instance is (`instance`, and
`owner`: unique per boot, the name its leases carry), the worker threads that run store calls
off the event loop, and the few ways SQL reaches the backend; each repository (bot/store/jobs.py,
runs.py, outbox.py, usage.py, stopping.py, events.py) is given it and uses only these public
methods.

SQL here is written once, with `?` placeholders; `bot.store.dialect` runs it on SQLite or on
PostgreSQL. Write paths that change more than one row use `write()`: one transaction holding the
database's write lock (SQLite `BEGIN IMMEDIATE`: in WAL mode a plain `BEGIN` that reads and then
writes fails with "database is locked" when another connection wrote in between; PostgreSQL: a
transaction-scoped advisory lock), so both databases serialize them the same way. Not a
command's new job (bot/store/jobs.py `create_job`), whose invariants unique keys and a CHECK
keep without that lock (`write(exclusive=False)`; on PostgreSQL one statement).

The fence: while an instance advances a job it holds the job's lease, and every write made on
that job's behalf (`write()`, `change()`) first checks, in the same transaction and with the
job's row locked, that the lease is still this instance's. A paused instance that wakes after
another took its job over gets `LeaseLost` instead of writing (and so never posts or sends twice).
"""

from __future__ import annotations

import contextvars
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import sqlite_utils

from bot.store.availability import (
    Availability,
    DatabaseUnavailable,
    Reason,
    request_deadline,
)
from bot.store.dialect import (
    Backend,
    Params,
    PostgresBackend,
    SqliteBackend,
    Tx,
    open_backend,
    reading,
)
from bot.store.models import QuietPoll
from bot.store.offloop import OffLoop, QueuedTooLong

P = ParamSpec("P")
T = TypeVar("T")


class LeaseLost(Exception):
    """This instance's lease on the job was taken over: it must stop working on the job."""


# (job id, owner) while a task advances a job under its lease; set by the poller.
_fence: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "lease_fence", default=None
)


def instance_name(env: dict[str, str] | None = None) -> str:
    """A name that survives this instance's restart on the same slot (Heroku's DYNO, or
    MOTION_INSTANCE), else host and pid (`<host>-pid<pid>`: a restart on the same host finds
    the leases of a process that no longer runs and takes them back at once)."""
    env = dict(os.environ) if env is None else env
    default = f"{socket.gethostname()}-pid{os.getpid()}"
    return env.get("MOTION_INSTANCE") or env.get("DYNO") or default


class Database:
    """The backend and this instance's identity, shared by every repository of one `Store`."""

    def __init__(self, target: str, *, instance: str | None = None) -> None:
        self.backend: Backend = open_backend(target)
        self.availability: Availability = self.backend.availability
        self.path = target
        self.instance = instance or instance_name()
        # Unique per boot: a restarted instance never mistakes its predecessor's leases for its own.
        self.owner = f"{self.instance}:{secrets.token_hex(3)}"
        try:
            self.migrated = self.backend.migrate()
        except BaseException:
            self.backend.close()
            raise
        # SQLite: one worker (one connection), and for a file one more for lookups (its reading
        # connection); PostgreSQL: one per pooled connection it may use.
        self.workers: OffLoop
        self.readers: OffLoop | None = None
        if isinstance(self.backend, SqliteBackend):
            self.workers = OffLoop(
                1, "store-sqlite", inline_lock=self.backend.lock, inline_when=self._may_run_inline
            )
            if self.backend.read_lock is not None:
                self.readers = OffLoop(
                    1, "store-sqlite-reads", inline_lock=self.backend.read_lock,
                    inline_when=self._may_run_inline,
                )  # fmt: skip
        else:
            workers = self.backend.worker_slots if isinstance(self.backend, PostgresBackend) else 1
            self.workers = OffLoop(workers, f"store-{self.backend.name}")

    def _may_run_inline(self) -> bool:
        """An off-loop call may run at once on the loop (SQLite, its connection free) unless
        the database is away: it then waits its budget on the worker, not on the loop. (So a
        request whose call meets the very start of an outage waits 0.5 s, not its 2 s.)"""
        return not self.availability.away

    async def off_loop(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the synchronous store call `fn(*args, **kwargs)` on the store's worker thread(s)
        (bot/store/offloop.py), so the event loop goes on serving while it waits on the database.
        Every store method can still be called directly, as before.

        Within a request's budget, a call that could not even start by its deadline (the
        workers all waiting on the database) is not run: DatabaseUnavailable at the deadline."""
        return await self._run_on(self.workers, fn, *args, **kwargs)

    async def _run_on(
        self, workers: OffLoop, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        deadline = request_deadline()
        if deadline is None:
            return await workers.run(fn, *args, **kwargs)
        try:
            return await workers.run_until(deadline, fn, *args, **kwargs)
        except QueuedTooLong:
            self.availability.refuse()
            raise DatabaseUnavailable(
                Reason.TIMED_OUT, "the store's workers were busy for the request's whole budget"
            ) from None

    async def read_off_loop(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`off_loop` for a call that only reads (a lookup a request answers with: usage, a
        list, a job's runs, a workspace's settings). On a SQLite file it runs on a worker of its
        own over the reading connection, so it neither queues behind writes nor waits for the
        write lock another process holds; it must not write (that connection refuses to).
        Elsewhere, the same as `off_loop`."""
        if self.readers is None:
            return await self.off_loop(fn, *args, **kwargs)
        return await self._run_on(self.readers, _read, fn, *args, **kwargs)

    @property
    def dialect(self) -> str:
        return self.backend.name

    @property
    def description(self) -> str:
        return self.backend.description

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils database (SQLite only: for tests and SQLite-specific checks)."""
        if not isinstance(self.backend, SqliteBackend):
            raise TypeError("the sqlite-utils Database exists only on SQLite")
        return self.backend.db

    def close(self) -> None:
        self.workers.close()  # what is running finishes first
        if self.readers is not None:
            self.readers.close()
        self.backend.close()

    @contextmanager
    def write(self, *, exclusive: bool = True) -> Iterator[Tx]:
        """A write transaction under the database's write lock, fenced by the lease while a
        job is being advanced (`LeaseLost` before anything is written). `exclusive=False`:
        without the write lock where the database cannot serialize for it (PostgreSQL), for
        a write whose invariants unique keys, CHECKs and row locks keep (bot/store/jobs.py's
        `create_job`)."""
        with self.backend.write(exclusive=exclusive) as tx:
            fence = _fence.get()
            if fence is not None:
                job_id, owner = fence
                row = tx.execute(
                    "SELECT lease_owner FROM jobs WHERE id = ?" + self.backend.for_update,
                    (job_id,),
                ).fetchone()
                if row is None or row[0] != owner:
                    raise LeaseLost(f"job {job_id}: lease held by {row[0] if row else None}")
            yield tx

    def change(self, sql: str, params: Params = ()) -> int:
        """One write statement; fenced (in a write transaction) while a job is being advanced.
        Returns the number of rows it changed."""
        if _fence.get() is None:
            return self.backend.execute(sql, params).rowcount
        with self.write() as tx:
            return tx.execute(sql, params).rowcount

    def change_returning(self, sql: str, params: Params = ()) -> Any:
        """A write statement with `RETURNING x`: its first value (None when no row matched)."""
        if _fence.get() is None:
            row = self.backend.execute(sql, params).fetchone()
        else:
            with self.write() as tx:
                row = tx.execute(sql, params).fetchone()
        return row[0] if row else None

    def ping(self) -> bool:
        return bool(self.value("SELECT 1") == 1)

    def probe(self) -> None:
        """The health check's look at the database (`Backend.probe`): DatabaseUnavailable
        while it is away."""
        self.backend.probe()

    def schema_is_current(self) -> bool:
        return not self.backend.pending_migrations()

    def schema_version(self) -> str:
        """The last migration this code knows, e.g. "m003_job_leases"."""
        from bot.store.migrations import migration_names

        return migration_names()[-1]

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """One statement on its own: its rows, each by column name."""
        result = self.backend.execute(sql, params)
        return [dict(zip(result.names, row, strict=True)) for row in result.rows]

    def value(self, sql: str, params: Params = ()) -> Any:
        """One statement on its own: the first column of its first row (None without a row)."""
        row = self.backend.execute(sql, params).fetchone()
        return row[0] if row else None


def _read(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn` with its statements sent to the reading connection (`read_off_loop`)."""
    with reading():
        return fn(*args, **kwargs)


def current_fence() -> tuple[int, str] | None:
    """(job id, lease owner) while a job is being advanced under its lease, else None."""
    return _fence.get()


@contextmanager
def lease_fence(job_id: int, owner: str) -> Iterator[None]:
    """Writes made in this context (this task and tasks it starts) are fenced by the lease."""
    token = _fence.set((job_id, owner))
    try:
        yield
    finally:
        _fence.reset(token)


class HeldPolls:
    """The quiet status answers of one look at one job, held for the poller to write with the
    job's release (`Store.release_many`): one statement for a whole batch instead of one per
    poll. Losing them to a crash costs nothing: they only say when the run was last looked at
    and what Motion said then, and the next holder's first look says it again."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.polls: list[QuietPoll] = []
        self.open = True  # closed when the look ends: a later write goes out on its own


_held: contextvars.ContextVar[HeldPolls | None] = contextvars.ContextVar("held_polls", default=None)


@contextmanager
def holding_polls(job_id: int) -> Iterator[HeldPolls]:
    """While a look at `job_id` runs: its quiet polls are held (`Store.hold_quiet_poll`)."""
    held = HeldPolls(job_id)
    token = _held.set(held)
    try:
        yield held
    finally:
        held.open = False
        _held.reset(token)


def held_polls() -> HeldPolls | None:
    return _held.get()


def leave_fence() -> None:
    """For a task started under a job's lease that outlives it (a video upload): its own
    writes touch only its own row and must not fail when the lease moves on."""
    _fence.set(None)
