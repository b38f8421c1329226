"""The poller's batch: the claim reads the jobs it leases with their runs, and the quiet polls
of the looks that ended are written with the jobs' release, so the common look (a run still
generating, nothing to tell Slack) sends no statement of its own. Store-level checks first,
then the real app counting every statement it sends while a run is followed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.poller import Claimed, Poller
from bot.sandbox import JobPlan
from bot.store import QuietPoll, Store, holding_polls, lease_fence
from tests.support.e2e import run_command
from tests.support.harness import Harness, until

NEVER = JobPlan(queued_s=0.02, created_s=0.02, running_s=3600)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def new_job(store: Store, prompt: str, *, due: float | None = 0.0) -> tuple[int, int]:
    job_id, run_id = store.create_job(
        team_id="T", channel_id="C", requester="U", response_url=None,
        request={"prompt": prompt}, sandbox=False, now=0.0,
    )  # fmt: skip
    store.set_due(job_id, due)
    return job_id, run_id


def owner(store: Store, job_id: int) -> str | None:
    job = store.job(job_id)
    assert job is not None
    return job.lease_owner


def test_the_claim_returns_each_leased_job_with_its_runs_in_two_statements(store: Store) -> None:
    first, first_run = new_job(store, "a", due=5.0)
    second, second_run = new_job(store, "b", due=1.0)
    new_job(store, "not due", due=500.0)
    new_job(store, "not followed", due=None)
    statements: list[str] = []
    execute = store.backend.execute

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(sql, params)

    store.backend.execute = counted  # type: ignore[method-assign]
    claimed = store.claim_due_looks(10.0, 10)
    store.backend.execute = execute  # type: ignore[method-assign]

    assert len(statements) == 2
    assert [job.id for job, _ in claimed] == [second, first]  # oldest due first
    for job, runs in claimed:
        assert job.lease_owner == store.owner and job.lease_until is not None
        assert job == store.job(job.id)  # the row as the claim left it
        assert runs == store.runs(job.id)
    assert [r.id for r in claimed[0][1]] == [second_run]
    assert [r.id for r in claimed[1][1]] == [first_run]
    assert store.claim_due_looks(10.0, 10) == []  # leased now: not due again for anyone
    assert store.runs_of([]) == {}


def test_quiet_polls_are_written_only_while_the_job_is_still_this_instances(
    store: Store, database_url: str
) -> None:
    other = Store(database_url, instance="other")
    try:
        mine, my_run = new_job(store, "mine")
        theirs, their_run = new_job(store, "theirs")
        assert store.claim_job(mine, 1.0)
        assert other.claim_job(theirs, 1.0)  # taken over: this instance's poll is stale
        written = store.record_quiet_polls(
            [QuietPoll(mine, my_run, "running", 2.5), QuietPoll(theirs, their_run, "running", 2.5)]
        )
        assert written == 1
        run = store.run(my_run)
        assert run is not None
        assert (run.motion_status, run.last_poll_at, run.seen_new) == ("running", 2.5, True)
        untouched = store.run(their_run)
        assert untouched is not None
        assert (untouched.motion_status, untouched.last_poll_at) == (None, None)
        # A poll naming a run of another job changes nothing.
        assert store.record_quiet_polls([QuietPoll(mine, their_run, "queued", 3.0)]) == 0
        assert store.record_quiet_polls([]) == 0
    finally:
        other.close()


def test_a_quiet_poll_is_held_only_inside_a_look_at_its_own_job(store: Store) -> None:
    job_id, run_id = new_job(store, "a")
    other_job, _ = new_job(store, "b")
    assert not store.hold_quiet_poll(job_id, run_id, motion_status="running", now=1.0)
    with lease_fence(job_id, store.owner), holding_polls(job_id) as held:
        assert store.hold_quiet_poll(job_id, run_id, motion_status="running", now=1.0)
        assert not store.hold_quiet_poll(other_job, run_id, motion_status="running", now=1.0)
    assert held.polls == [QuietPoll(job_id, run_id, "running", 1.0)]
    # After the look: whatever comes late is written on its own, never dropped in a closed list.
    assert not store.hold_quiet_poll(job_id, run_id, motion_status="running", now=2.0)
    assert held.polls == [QuietPoll(job_id, run_id, "running", 1.0)]


async def test_the_poller_writes_the_held_polls_before_it_gives_the_job_back(
    store: Store,
) -> None:
    job_id, run_id = new_job(store, "a")
    looked: list[Claimed | None] = []

    async def advance(job: int, claimed: Claimed | None) -> float | None:
        looked.append(claimed)
        assert store.hold_quiet_poll(job, run_id, motion_status="running", now=7.0)
        return None

    poller = Poller(store, advance)
    poller.start()
    await until(lambda: looked, what="the look")
    await until(lambda: owner(store, job_id) is None, what="the job given back")
    await poller.stop(1)
    claimed = looked[0]
    assert claimed is not None and claimed[0].id == job_id
    assert [r.id for r in claimed[1]] == [run_id]
    run = store.run(run_id)
    assert run is not None and (run.motion_status, run.last_poll_at) == ("running", 7.0)
    job = store.job(job_id)
    assert job is not None and job.due_at is None  # given back: nothing more until woken


async def test_a_poll_held_by_a_look_whose_lease_was_taken_over_is_not_written(
    store: Store, database_url: str
) -> None:
    job_id, run_id = new_job(store, "a")
    other = Store(database_url, instance="other")
    gate = asyncio.Event()

    async def advance(job: int, claimed: Claimed | None) -> float | None:
        assert store.hold_quiet_poll(job, run_id, motion_status="running", now=7.0)
        await gate.wait()
        return 5.0

    poller = Poller(store, advance, lease_seconds=0.3)
    try:
        poller.start()
        await until(lambda: owner(store, job_id) == store.owner, what="the job leased")
        # The holder pauses past its lease (no renewal reaches the row) and another takes over.
        store.backend.execute("UPDATE jobs SET lease_until = 0 WHERE id = ?", (job_id,))
        assert other.claim_job(job_id, time.time())
        gate.set()
        await asyncio.sleep(0.3)
        await poller.stop(1)
        run = store.run(run_id)
        assert run is not None and run.last_poll_at is None  # the stale poll was refused
        job = store.job(job_id)
        assert job is not None and job.lease_owner == other.owner
    finally:
        other.close()


# ---------------------------------------------------------------- the real app's statements

POLLER_BATCH = {
    "claim": re.compile(
        r"^UPDATE jobs SET lease_owner = \?, lease_until = \?, woken = 0 WHERE id IN"
    ),
    "runs of the claimed": re.compile(r"^SELECT \* FROM runs WHERE job_id IN \("),
    "quiet polls": re.compile(r"^UPDATE runs SET seen_new = 1, motion_status = polled\.column3"),
    "release": re.compile(r"^UPDATE jobs SET due_at = CASE WHEN jobs\.woken = 1"),
    "next due": re.compile(r"^SELECT MIN\(due_at\) FROM jobs"),
    "renew": re.compile(r"^UPDATE jobs SET lease_until = \? WHERE lease_owner = \?$"),
}


def kind(sql: str) -> str:
    return next((name for name, rule in POLLER_BATCH.items() if rule.search(sql)), sql)


async def test_following_a_generating_run_sends_only_the_pollers_batch_statements(
    harness: Harness,
) -> None:
    """Every statement the app sends while a never-finishing run is polled is recorded: all of
    them are the poller's batch (claim, the claimed jobs' runs, the quiet polls, release, when
    next, heartbeat), none is a look's own read or write, no write transaction is opened, and
    the run's record still says when it was last looked at."""
    bot = await harness.start()
    harness.sandbox.plan_next(NEVER)
    await run_command(harness, "a slow teaser")
    await until(lambda: harness.sandbox.count("status") >= 2, what="two status calls")
    [job] = bot.store.recent_jobs("T0001", "U0ALICE")
    statements: list[str] = []
    transactions = 0
    backend = bot.store.backend
    execute, write = backend.execute, backend.write

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(sql, params)

    def counted_write() -> Any:
        nonlocal transactions
        transactions += 1
        return write()

    backend.execute = counted  # type: ignore[method-assign]
    backend.write = counted_write  # type: ignore[method-assign]
    before = harness.sandbox.count("status")
    try:
        await until(lambda: harness.sandbox.count("status") >= before + 3, timeout=20)
        await asyncio.sleep(0.2)  # the last look's batch
    finally:
        backend.execute, backend.write = execute, write  # type: ignore[method-assign]
    polls = harness.sandbox.count("status") - before
    kinds = [kind(sql) for sql in statements]
    assert set(kinds) <= set(POLLER_BATCH), [k for k in kinds if k not in POLLER_BATCH]
    assert {"claim", "runs of the claimed", "quiet polls", "release"} <= set(kinds)
    assert transactions == 0
    [run] = bot.store.runs(job.id)
    assert run.motion_status == "running" and run.last_poll_at is not None
    assert run.last_poll_at > (job.created_at or 0)
    print(f"[statements per status call] {len(statements) / polls:.1f} over {polls} polls")
