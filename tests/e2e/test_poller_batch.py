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
from bot.store import LeaseLost, QuietPoll, Store, holding_polls, lease_fence
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
    """Who holds the job (read raw: one test stores a row the code cannot read)."""
    rows = store.backend.execute("SELECT lease_owner FROM jobs WHERE id = ?", (job_id,)).rows
    assert rows
    return rows[0][0]  # type: ignore[no-any-return]


def test_the_claimed_jobs_are_read_with_their_runs_in_one_statement(store: Store) -> None:
    first, first_run = new_job(store, "a", due=5.0)
    second, second_run = new_job(store, "b", due=1.0)
    new_job(store, "not due", due=500.0)
    without_runs, run = new_job(store, "no runs yet", due=2.0)
    store.backend.execute("DELETE FROM runs WHERE id = ?", (run,))
    claimed = [job_id for job_id, _ in store.claim_due(10.0, 10)]
    assert claimed == [second, without_runs, first]  # oldest due first
    statements: list[str] = []
    execute = store.backend.execute

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(sql, params)

    store.backend.execute = counted  # type: ignore[method-assign]
    read = store.jobs_and_runs([*claimed, 999_999])
    store.backend.execute = execute  # type: ignore[method-assign]

    assert len(statements) == 1
    assert [job.id for job, _ in read] == claimed  # in the order asked; unknown ids left out
    for job, runs in read:
        assert job.lease_owner == store.owner and job.lease_until is not None
        assert job == store.job(job.id)
        assert runs == store.runs(job.id)
    assert dict((job.id, [r.id for r in runs]) for job, runs in read) == {
        second: [second_run], without_runs: [], first: [first_run],
    }  # fmt: skip
    assert store.jobs_and_runs([]) == []
    assert store.claim_due(10.0, 10) == []  # leased now: not due again for anyone


def test_the_heartbeat_can_renew_only_the_jobs_at_work(store: Store) -> None:
    working, _ = new_job(store, "at work")
    forgotten, _ = new_job(store, "leased, no look running")
    assert store.claim_job(working, 1.0) and store.claim_job(forgotten, 1.0)
    assert store.renew_leases(2.0, lease_seconds=30.0, job_ids=[working]) == 1
    assert store.renew_leases(2.0, lease_seconds=30.0, job_ids=[]) == 0
    assert lease_until(store, working) == 32.0
    assert lease_until(store, forgotten) == 31.0  # runs out: another instance may take it


def lease_until(store: Store, job_id: int) -> float | None:
    job = store.job(job_id)
    assert job is not None
    return job.lease_until


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
        # Never over a newer look (a late batch), and of two for one run, the newer counts.
        assert store.record_quiet_polls([QuietPoll(mine, my_run, "queued", 1.5)]) == 0
        late, newer = (
            QuietPoll(mine, my_run, "queued", 2.6),
            QuietPoll(mine, my_run, "running", 2.7),
        )
        assert store.record_quiet_polls([newer, late]) == 1
        run = store.run(my_run)
        assert run is not None and (run.motion_status, run.last_poll_at) == ("running", 2.7)
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


def test_held_polls_are_written_fenced_before_the_look_tells_slack_anything(
    store: Store, database_url: str
) -> None:
    """`write_held_polls` (called before a card edit) writes them now, or raises LeaseLost
    when another instance took the job over: the old holder never edits the card."""
    job_id, run_id = new_job(store, "a")
    other = Store(database_url, instance="other")
    try:
        assert store.claim_job(job_id, time.time())
        with lease_fence(job_id, store.owner), holding_polls(job_id) as held:
            store.write_held_polls()  # nothing held: nothing to do
            assert store.hold_quiet_poll(job_id, run_id, motion_status="queued", now=1.0)
            store.write_held_polls()
            assert held.polls == []
            run = store.run(run_id)
            assert run is not None and (run.motion_status, run.last_poll_at) == ("queued", 1.0)
            take_over(store, other, job_id)
            assert store.hold_quiet_poll(job_id, run_id, motion_status="running", now=2.0)
            with pytest.raises(LeaseLost):
                store.write_held_polls()
        run = store.run(run_id)
        assert run is not None and (run.motion_status, run.last_poll_at) == ("queued", 1.0)
    finally:
        other.close()


def take_over(store: Store, other: Store, job_id: int) -> None:
    """Another instance holds the job now, as after this one paused past its lease."""
    store.backend.execute(
        "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ?",
        (other.owner, time.time() + 60, job_id),
    )


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
        take_over(store, other, job_id)  # this one paused past its lease
        gate.set()
        await asyncio.sleep(0.3)
        await poller.stop(1)
        run = store.run(run_id)
        assert run is not None and run.last_poll_at is None  # the stale poll was refused
        job = store.job(job_id)
        assert job is not None and job.lease_owner == other.owner
    finally:
        other.close()


async def test_a_quiet_poll_that_cannot_be_written_is_dropped_and_the_poller_goes_on(
    store: Store,
) -> None:
    """A held poll the database refuses (here a run id beyond BIGINT, refused by both) must not
    hold up every other job's release and claim: it is logged and dropped."""
    bad, _ = new_job(store, "bad")
    looked: list[int] = []

    async def advance(job: int, claimed: Claimed | None) -> float | None:
        looked.append(job)
        if job == bad:
            assert store.hold_quiet_poll(job, 2**64, motion_status="running", now=7.0)
        return None

    poller = Poller(store, advance)
    poller.start()
    try:
        await until(lambda: looked == [bad], what="the first look")
        await until(lambda: owner(store, bad) is None, what="the job given back all the same")
        later, _ = new_job(store, "later")
        poller.wake(later)
        await until(lambda: later in looked, what="a later job's look")
        await until(lambda: owner(store, later) is None, what="the later job given back")
    finally:
        await poller.stop(1)
    assert poller.alive is False and looked == [bad, later]


async def test_a_job_that_cannot_be_read_after_the_claim_still_gets_its_look(
    store: Store,
) -> None:
    """The claim commits on its own; if reading the claimed jobs then fails (here a row this
    code cannot read), each is still looked at (reading for itself) and given back, never
    left leased with no look running, renewed forever."""
    broken, _ = new_job(store, "broken")
    fine, _ = new_job(store, "fine")
    store.backend.execute("UPDATE jobs SET state = 'from-a-later-release' WHERE id = ?", (broken,))
    looked: dict[int, Claimed | None] = {}

    async def advance(job: int, claimed: Claimed | None) -> float | None:
        looked[job] = claimed
        return 60.0

    poller = Poller(store, advance)
    poller.start()
    try:
        await until(lambda: set(looked) == {broken, fine}, what="both looks")
        await until(
            lambda: owner(store, broken) is None and owner(store, fine) is None,
            what="both given back",
        )
    finally:
        await poller.stop(1)
    assert looked == {broken: None, fine: None}  # read in one statement: both read for themselves
    row = store.backend.execute("SELECT due_at FROM jobs WHERE id = ?", (broken,)).rows[0]
    assert row[0] is not None and row[0] > time.time() + 30  # looked at again in 60 s


async def test_stopping_writes_the_held_polls_then_gives_the_jobs_back(store: Store) -> None:
    job_id, run_id = new_job(store, "a")
    started = asyncio.Event()

    async def advance(job: int, claimed: Claimed | None) -> float | None:
        assert store.hold_quiet_poll(job, run_id, motion_status="running", now=9.0)
        started.set()
        await asyncio.sleep(0.3)  # still looking when SIGTERM comes
        return 20.0

    poller = Poller(store, advance)
    poller.start()
    await asyncio.wait_for(started.wait(), 10)
    await poller.stop(5)
    run = store.run(run_id)
    assert run is not None and (run.motion_status, run.last_poll_at) == ("running", 9.0)
    assert owner(store, job_id) is None


# ---------------------------------------------------------------- the real app's statements

POLLER_BATCH = {
    "claim": re.compile(
        r"^WITH due AS MATERIALIZED \(SELECT id, lease_owner FROM jobs WHERE due_at <= \?"
    ),
    "the claimed jobs and their runs": re.compile(
        r"^SELECT jobs\.\*, 1 AS runs_follow, runs\.\* FROM jobs LEFT JOIN runs ON runs\.job_id ="
        r" jobs\.id WHERE jobs\.id IN \("
    ),
    "quiet polls": re.compile(r"^UPDATE runs SET seen_new = 1, motion_status = polled\.column3"),
    "release": re.compile(r"^UPDATE jobs SET due_at = CASE WHEN jobs\.woken = 1"),
    "next due": re.compile(r"^SELECT MIN\(due_at\) FROM jobs"),
    "renew": re.compile(r"^UPDATE jobs SET lease_until = \? WHERE lease_owner = \? AND id IN"),
}
# A held poll written on its own, fenced, just before the look edits the card (`Card.refresh`).
BEFORE_AN_EDIT = re.compile(r"^UPDATE runs SET seen_new = 1, motion_status = \?, last_poll_at = \?")


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

    edits_before = len(harness.slack.calls("chat.update"))
    backend.execute = counted  # type: ignore[method-assign]
    backend.write = counted_write  # type: ignore[method-assign]
    before, started = harness.sandbox.count("status"), time.time()
    try:
        await until(lambda: harness.sandbox.count("status") >= before + 3, timeout=20)
        await asyncio.sleep(0.2)  # the last look's batch
    finally:
        backend.execute, backend.write = execute, write  # type: ignore[method-assign]
    polls = harness.sandbox.count("status") - before
    edits = len(harness.slack.calls("chat.update")) - edits_before
    kinds = [kind(sql) for sql in statements]
    own = [k for k in kinds if k not in POLLER_BATCH]
    assert all(BEFORE_AN_EDIT.search(k) for k in own), own
    assert len(own) <= edits  # a held poll is written on its own only before a card edit
    assert {"claim", "the claimed jobs and their runs", "quiet polls", "release"} <= set(kinds)
    assert transactions == 0
    [run] = bot.store.runs(job.id)
    assert run.motion_status == "running" and run.last_poll_at is not None
    assert run.last_poll_at >= started  # a poll made in the window was recorded
    print(f"[statements per status call] {len(statements) / polls:.1f} over {polls} polls")
