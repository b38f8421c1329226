"""The store's work off the event loop (`Store.off_loop`): calls made on the loop thread and on
the store's workers take turns on the database, nothing they write is lost, what they start on
the loop starts there, and a slow database no longer freezes the app."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.store import Job, Store
from bot.store.dialect import PostgresBackend, SqliteBackend
from bot.store.offloop import OffLoop, in_off_loop, on_loop
from tests.support.harness import Harness, until

ACK_LIMIT = 3.0  # Slack's: an ack (or a health check) later than this counts as a failure


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    try:
        yield store
    finally:
        store.close()


def new_job(store: Store, prompt: str) -> int:
    created = store.create_job(
        team_id="T", channel_id="C", requester="U", response_url=None,
        request={"prompt": prompt}, sandbox=False, now=1.0,
    )  # fmt: skip
    assert created is not None
    return created[0]


def bump(store: Store, job_id: int) -> None:
    """A read, then a write that depends on it, in one write transaction: two of these that
    interleave lose an increment."""
    with store._write() as tx:
        (errors,) = tx.execute("SELECT errors FROM jobs WHERE id = ?", (job_id,)).fetchone()
        time.sleep(0.0005)  # widen the window a careless interleaving would fall into
        tx.execute("UPDATE jobs SET errors = ? WHERE id = ?", (errors + 1, job_id))


async def test_calls_on_the_loop_and_on_the_workers_take_turns_and_lose_nothing(
    store: Store,
) -> None:
    counter = new_job(store, "counter")
    off, on, other = 120, 120, 60
    errors: list[BaseException] = []

    async def on_the_loop() -> None:
        for i in range(on):
            bump(store, counter)  # synchronous, on the loop thread, as other code calls it
            new_job(store, f"loop {i}")
            await asyncio.sleep(0)  # let the workers' calls in between

    def another_thread() -> None:  # code of its own calling the store from a thread
        try:
            for _ in range(other):
                bump(store, counter)
        except BaseException as exc:
            errors.append(exc)

    backend = store.backend
    if isinstance(backend, SqliteBackend):
        # Busy at first, so the first off-loop calls queue for the worker thread rather than
        # run at once on the loop (which they do when the connection is free).
        held = threading.Event()

        def hold_a_moment() -> None:
            with backend.lock:
                held.set()
                time.sleep(0.05)

        threading.Thread(target=hold_a_moment).start()
        held.wait(5)
    thread = threading.Thread(target=another_thread)
    thread.start()
    await asyncio.gather(
        on_the_loop(),
        *(store.off_loop(bump, store, counter) for _ in range(off)),
        *(store.off_loop(new_job, store, f"worker {i}") for i in range(off)),
    )
    await asyncio.to_thread(thread.join)
    for _ in range(10):  # the connection free now: these run at once on SQLite
        await store.off_loop(bump, store, counter)

    assert errors == []  # no ProgrammingError ("recursive use of cursors"), no lock error
    job = store.job(counter)
    assert job is not None and job.errors == off + on + other + 10  # no increment lost
    prompts = [j.prompt for j in store.recent_jobs("T", "U", limit=1000)]
    assert len(prompts) == 1 + on + off
    assert {f"loop {i}" for i in range(on)} | {f"worker {i}" for i in range(off)} <= set(prompts)
    for job_id in range(counter + 1, counter + 1 + on + off):
        assert len(store.runs(job_id)) == 1  # each job kept its first run: both or neither
    if isinstance(backend, SqliteBackend):  # both ways were taken: the worker and at once
        assert 10 <= store._off_loop.inline_calls < 2 * off + 10


async def test_what_a_worker_starts_on_the_loop_starts_after_it_returns(store: Store) -> None:
    loop_thread = threading.get_ident()
    happened: list[tuple[str, int, bool]] = []
    workers = OffLoop(1, "test-workers")  # always a thread (no lock to run at once under)

    def work() -> int:
        on_loop(lambda: happened.append(("started", threading.get_ident(), in_off_loop())))
        happened.append(("worker", threading.get_ident(), in_off_loop()))
        return new_job(store, "from a worker")

    try:
        job_id = await workers.run(work)
    finally:
        workers.close()

    assert store.job(job_id) is not None
    assert happened[0][0] == "worker" and happened[0][1] != loop_thread and happened[0][2]
    assert happened[1] == ("started", loop_thread, False)
    on_loop(lambda: happened.append(("now", threading.get_ident(), in_off_loop())))
    assert happened[2] == ("now", loop_thread, False)  # outside off_loop: at once


async def test_the_lease_fence_travels_to_the_worker(store: Store) -> None:
    from bot.store import LeaseLost, lease_fence

    job_id = new_job(store, "leased")
    assert store.claim_job(job_id, 10.0)
    with lease_fence(job_id, "someone-else:000000"), pytest.raises(LeaseLost):
        await store.off_loop(store.set_due, job_id, 99.0)
    with lease_fence(job_id, store.owner):
        await store.off_loop(store.set_due, job_id, 42.0)
    job = store.job(job_id)
    assert job is not None and job.due_at == 42.0


@pytest.mark.postgres_only
async def test_the_app_answers_while_a_command_waits_on_another_sessions_lock(
    harness: Harness,
) -> None:
    """Another session holds a lock the command's write needs (the workspace's run counter,
    whose row lock is how limits hold without a global write lock) for 4 s: the command's
    statement waits for it, and meanwhile /healthz and `/motion usage` answer (with the store
    on the loop, both waited); then the command is answered within Slack's 3 s, privately:
    nothing was started, try again (tests/e2e/test_database_away.py has the outages)."""
    import psycopg

    bot = await harness.start()
    backend = bot.store.backend
    assert isinstance(backend, PostgresBackend)
    assert "card will appear" in (await harness.command("the first")).text  # counters exist
    locked = threading.Event()
    held_for = 4.0

    def hold_the_counter() -> float:
        with psycopg.connect(backend.url, autocommit=True) as other, other.transaction():
            other.execute(
                "SELECT runs FROM usage_counts WHERE team_id = 'T0001' AND user_id = '' FOR UPDATE"
            )
            locked.set()
            time.sleep(held_for)  # released by this thread, whatever the app's loop does
            return time.monotonic()

    holder = asyncio.get_running_loop().run_in_executor(None, hold_the_counter)
    await asyncio.to_thread(locked.wait, 10)
    arrived = time.monotonic()
    command = asyncio.create_task(harness.command("a slow database"))
    await asyncio.sleep(0.1)  # the command's statement is now waiting on the row lock
    health = await harness.http.get(f"http://127.0.0.1:{bot.port}/healthz")
    health_after = time.monotonic() - arrived
    usage = await harness.command("usage")
    usage_after = time.monotonic() - arrived
    waiting = not command.done()
    response = await command
    command_after = time.monotonic() - arrived
    await holder

    assert health.status_code == 200 and health_after < ACK_LIMIT
    assert usage.status_code == 200 and usage_after < ACK_LIMIT
    assert "month" in usage.text.lower()
    assert waiting  # both answered while the command still waited on the lock
    assert response.status_code == 200 and command_after < ACK_LIMIT
    assert "nothing was started" in response.text and "try again" in response.text.lower()
    # (Read from a thread of the test's own: on the loop's thread, a store call is refused
    # at once while the app knows the database is away.)
    jobs = await asyncio.to_thread(bot.store.recent_jobs, "T0001", "U0ALICE")
    assert [j.prompt for j in jobs] == ["the first"]
    again = await harness.command("a slow database")  # the lock is free: it starts now
    assert "card will appear" in again.text
    jobs = await asyncio.to_thread(bot.store.recent_jobs, "T0001", "U0ALICE")
    assert [j.prompt for j in jobs] == ["a slow database", "the first"]
    await until(lambda: len(harness.cards()) == 2 or None, what="the job cards")


async def test_forty_commands_at_once_each_become_one_job_through_the_workers(
    harness: Harness,
) -> None:
    """Many commands at once, each recorded on a store worker: every one is acknowledged and
    recorded once, and the health check is answered meanwhile."""
    bot = await harness.start()
    commands = [asyncio.create_task(harness.command(f"burst {i}")) for i in range(40)]
    async with httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        health = await client.get(f"http://127.0.0.1:{bot.port}/healthz")
        assert health.status_code == 200
        assert time.monotonic() - started < ACK_LIMIT
    responses = await asyncio.gather(*commands)
    assert [r.status_code for r in responses] == [200] * 40
    assert len(bot.store.recent_jobs("T0001", "U0ALICE", limit=100)) == 40


def test_release_many_gives_back_this_instances_jobs_in_one_statement(
    store: Store, database_url: str
) -> None:
    other = Store(database_url, instance="other")
    try:
        mine, woken, none_due, theirs = (new_job(store, p) for p in ("a", "b", "c", "d"))
        for job_id in (mine, woken, none_due):
            assert store.claim_job(job_id, 10.0)
        assert other.claim_job(theirs, 10.0)
        store.wake(woken, 11.0)  # woken while leased: due at release time, not later

        given_back = store.release_many(
            [(mine, 500.0), (woken, 600.0), (none_due, None), (theirs, 700.0)], 12.0
        )

        assert given_back == 3  # not the job another instance holds

        def job(job_id: int) -> Job:
            found = store.job(job_id)
            assert found is not None
            return found

        assert (job(mine).due_at, job(mine).lease_owner) == (500.0, None)
        assert (job(woken).due_at, job(woken).lease_owner) == (12.0, None)
        assert (job(none_due).due_at, job(none_due).lease_owner) == (None, None)
        assert job(theirs).lease_owner == other.owner and job(theirs).due_at != 700.0
        assert store.release_many([], 13.0) == 0
    finally:
        other.close()
