"""The database away for a moment, at the store (bot/store/availability.py): every call waits at
most what its caller can afford, a write that cannot finish in time is rolled back whole
(`DatabaseUnavailable`), an outage is logged once when it begins and once when it ends, and
calls made on the event loop do not queue up behind it. The app itself through an outage:
tests/e2e/test_database_away.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.store import DatabaseUnavailable, Reason, Store, request_budget
from bot.store.availability import (
    BACKGROUND_SECONDS,
    LOOP_SECONDS,
    RETRY_MAX_SECONDS,
    RETRY_MIN_SECONDS,
    Availability,
    within_request,
)
from bot.store.dialect import SqliteBackend


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def new_job(store: Store, *keys: str) -> tuple[int, int] | None:
    return store.create_job(
        team_id="T1", channel_id="C1", requester="U1", response_url=None,
        request={"prompt": "a fox"}, sandbox=True, now=1.0, event_keys=keys,
    )  # fmt: skip


def sqlite_file(store: Store) -> str:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    return backend.path


@contextmanager
def held_by_another_connection(path: str) -> Iterator[None]:
    """The file under an exclusive lock of another connection (as another process's long
    write holds it: readers go on in WAL mode, writers wait)."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.store"]


@pytest.mark.sqlite_only
def test_a_write_under_another_connections_lock_gives_up_within_its_budget_and_keeps_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.store")
    with held_by_another_connection(sqlite_file(store)):
        started = time.monotonic()
        with request_budget(0.6), pytest.raises(DatabaseUnavailable) as raised:
            new_job(store, "event:Ev1")
        waited = time.monotonic() - started
        for _ in range(3):  # later failures of the same outage log nothing more
            with request_budget(0.1), pytest.raises(DatabaseUnavailable):
                new_job(store, "event:Ev2")
        # Reads go on under another connection's write lock, and prove nothing about writes.
        assert store.recent_jobs("T1", "U1") == []
        assert store.availability.away and store.availability.needs_write
    assert raised.value.reason == Reason.LOCKED
    assert 0.5 <= waited < 1.2  # the budget, not SQLite's old 10 s
    assert store.recent_jobs("T1", "U1") == []  # no job, no run, no counted spend
    assert new_job(store, "event:Ev1") is not None  # nor the claim: the retry takes the key
    assert not store.availability.away  # a write went through: the outage is over
    began, ended = store_lines(caplog)
    assert began.startswith("database locked (") and "try again in a moment" in began
    assert ended.startswith("database back after") and "4 call(s)" in ended


@pytest.mark.sqlite_only
async def test_sqlite_lookups_neither_queue_behind_writes_nor_wait_for_the_write_lock(
    store: Store,
) -> None:
    """While another process holds the file's write lock, writes queue on the writing
    connection's worker, each waiting its budget; a lookup (`read_off_loop`) goes on at once
    on the reading connection, and that connection refuses to write."""
    created = new_job(store)
    assert created is not None
    job_id = created[0]
    with held_by_another_connection(sqlite_file(store)):
        with request_budget(0.1), pytest.raises(DatabaseUnavailable):
            await store.off_loop(store.add_error, job_id)  # the outage is known: no call inline
        with request_budget(1.5):
            writes = [
                asyncio.ensure_future(store.off_loop(store.add_error, job_id)) for _ in range(2)
            ]
            await asyncio.sleep(0.05)  # the first write is waiting for the lock
            started = time.monotonic()
            job = await store.read_off_loop(store.job, job_id)
            looked = time.monotonic() - started
            assert not any(w.done() for w in writes)  # still waiting behind the lock
            results = await asyncio.gather(*writes, return_exceptions=True)
    assert job is not None and job.id == job_id
    assert looked < 0.5  # the writes wait 1.5 s
    assert all(isinstance(r, DatabaseUnavailable) for r in results)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store.read_off_loop(store.add_error, job_id)
    assert await store.off_loop(store.add_error, job_id) == 1  # nothing before was kept


async def test_a_lookup_sees_what_was_just_written(store: Store) -> None:
    """On either database a lookup after a write reads it (SQLite: another connection)."""
    created = await store.off_loop(new_job, store)
    assert created is not None
    assert await store.off_loop(store.add_error, created[0]) == 1
    job = await store.read_off_loop(store.job, created[0])
    assert job is not None and job.errors == 1


@pytest.mark.sqlite_only
def test_sqlite_busy_timeout_is_never_longer_than_the_callers_budget(store: Store) -> None:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)

    def busy_timeout() -> int:
        return int(backend.db.conn.execute("PRAGMA busy_timeout").fetchone()[0])

    with request_budget(0.8):
        store.job(1)
        assert 0 < busy_timeout() <= 800
    store.job(1)  # outside any request, off the loop: the background budget
    assert 0 < busy_timeout() <= BACKGROUND_SECONDS * 1000


async def test_on_the_event_loop_a_call_waits_half_a_second_at_most_and_not_at_all_while_away(
    store: Store, database_url: str
) -> None:
    """A call on the loop's thread holds up every request meanwhile: it waits `LOOP_SECONDS`
    at most, and while the database is known to be away it is refused at once (calls must not
    queue up behind one another), while the store's workers still try, within their budget."""
    created = new_job(store)
    assert created is not None
    job_id = created[0]
    if store.dialect == "sqlite":
        lock = held_by_another_connection(sqlite_file(store))
    else:
        lock = held_row_lock(database_url, job_id)
    with lock:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            store.add_error(job_id)  # on the loop, not knowing yet: waits, then gives up
        first = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            store.add_error(job_id)  # known to be away now: not tried
        second = time.monotonic() - started
        started = time.monotonic()
        with request_budget(0.4), pytest.raises(DatabaseUnavailable):
            await store.off_loop(store.add_error, job_id)  # a worker tries all the same
        worker = time.monotonic() - started
    assert LOOP_SECONDS - 0.1 <= first < LOOP_SECONDS + 0.4
    assert second < 0.05
    assert 0.3 <= worker < 0.9
    assert await store.off_loop(store.add_error, job_id) == 1  # nothing before was kept
    assert not store.availability.away


@contextmanager
def held_row_lock(url: str, job_id: int) -> Iterator[None]:
    """PostgreSQL: another session holds the job's row (a statement on its own waits for it
    the session's lock_timeout, which no caller's budget is shorter than)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as other, other.transaction():
        other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        yield


def test_a_request_whose_time_is_spent_is_refused_without_calling_it_an_outage(
    store: Store,
) -> None:
    with request_budget(0.0), pytest.raises(DatabaseUnavailable) as raised:
        new_job(store, "event:late")
    assert raised.value.reason == Reason.TIMED_OUT
    assert not store.availability.away
    assert new_job(store, "event:late") is not None


def test_what_a_request_may_spend_elsewhere_leaves_time_for_its_writes() -> None:
    assert within_request(2.0) == 2.0  # outside a request: as asked
    with request_budget(1.0):
        assert 0.6 < within_request(2.0) <= 0.7  # 0.3 s kept for the request's writes
        assert within_request(0.2) == 0.2
    with request_budget(0.1):
        assert within_request(2.0) == 0.0


def test_one_line_when_an_outage_begins_one_when_it_ends_and_retries_spread_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.store")
    now = [100.0]
    availability = Availability("test", clock=lambda: now[0])
    assert RETRY_MIN_SECONDS <= availability.retry_delay() <= RETRY_MIN_SECONDS * 1.25
    for _ in range(50):
        availability.failed(DatabaseUnavailable(Reason.UNREACHABLE, "connection refused"))
    assert availability.retry_delay() <= RETRY_MIN_SECONDS * 1.25  # soon at first
    now[0] += 4.0
    assert 2.0 <= availability.retry_delay() <= 2.5  # half the outage so far
    now[0] += 100.0
    assert RETRY_MAX_SECONDS <= availability.retry_delay() <= RETRY_MAX_SECONDS * 1.25
    availability.succeeded(wrote=False)  # unreachable: any answer means it is back
    availability.succeeded(wrote=False)
    began, ended = store_lines(caplog)
    assert began.startswith("database unreachable (connection refused)")
    assert (
        ended == "database back after 104.0 s (unreachable; 50 call(s) failed or refused meanwhile)"
    )
    locked = Availability("test")
    locked.failed(DatabaseUnavailable(Reason.LOCKED, "database is locked"))
    locked.succeeded(wrote=False)  # a read proves nothing about another's write lock
    assert locked.away
    locked.succeeded(wrote=True)
    assert not locked.away
