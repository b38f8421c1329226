"""The store on a real database (a SQLite file, or PostgreSQL with TEST_DATABASE_URL): migrations,
leases, and writes that happen once or not at all."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.store import (
    LEASE_SECONDS,
    DatabaseUnavailable,
    LeaseLost,
    NewPost,
    Reason,
    Store,
    lease_fence,
    request_budget,
)
from bot.store.migrations import migration_names, postgres_migrations

T0 = 1_000_000.0
REQUEST = {"prompt": "a fox in the snow", "style_url": None, "attachments": [], "aspect": None}


@pytest.fixture
def path(database_url: str) -> str:
    return database_url


@pytest.fixture
def store(path: str) -> Iterator[Store]:
    opened = Store(path)
    yield opened
    opened.close()


def new_job(
    store: Store, *, channel: str = "C1", thread_ts: str | None = "1.1", now: float = T0
) -> tuple[int, int]:
    job_id, run_id = store.create_job(
        team_id="T1",
        channel_id=channel,
        requester="U1",
        response_url="https://hooks.slack.example/r",
        request=REQUEST,
        sandbox=True,
        now=now,
    )
    if thread_ts is not None:
        store.record_card(job_id, thread_ts, channel, "new", "digest", now)
    return job_id, run_id


def followup(store: Store, job_id: int, reply_ts: str, keys: tuple[str, ...] = ()) -> int | None:
    return store.add_followup(
        job_id, {"prompt": f"reply {reply_ts}"}, "U2", "C1", reply_ts, T0 + 1, event_keys=keys
    )


def post(kind: str, **payload: Any) -> NewPost:
    return NewPost(kind=kind, payload={"text": kind, **payload})


# ---------------------------------------------------------------- schema


def test_opening_the_same_database_twice_applies_migrations_once(path: str) -> None:
    first = Store(path)
    assert first.migrated == migration_names()
    job_id, _ = new_job(first)
    first.close()
    second = Store(path)
    try:
        assert second.migrated == []
        assert second.schema_is_current()
        table = "schema_migrations" if second.dialect == "postgresql" else "_sqlite_migrations"
        applied = [r["name"] for r in second._rows(f"SELECT name FROM {table}")]
        assert applied == migration_names()
        job = second.job(job_id)
        assert job is not None
        assert job.prompt == "a fox in the snow"
    finally:
        second.close()


def test_every_migration_exists_in_both_dialects() -> None:
    assert [name for name, _ in postgres_migrations()] == migration_names()


@pytest.mark.sqlite_only
def test_database_uses_wal_mode(store: Store, path: str) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with sqlite3.connect(path.removeprefix("sqlite:///")) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_has_every_table_it_needs(store: Store) -> None:
    for table in ("jobs", "runs", "posts", "events", "run_history"):
        assert store._value(f"SELECT COUNT(*) FROM {table}") == 0
    assert store.ping() is True


# ---------------------------------------------------------------- jobs and followups


def test_create_job_records_the_job_and_its_first_run_together(store: Store) -> None:
    job_id, run_id = new_job(store, thread_ts=None)
    job = store.job(job_id)
    assert job is not None
    assert (job.team_id, job.channel_id, job.requester, job.state) == ("T1", "C1", "U1", "new")
    assert job.sandbox is True
    assert job.due_at == T0
    [run] = store.runs(job_id)
    assert run.id == run_id
    assert (run.number, run.kind, run.state, run.request) == (1, "create", "waiting", REQUEST)


def test_a_job_is_found_by_its_thread(store: Store) -> None:
    job_id, _ = new_job(store, thread_ts="1700000000.000100")
    found = store.job_for_thread("C1", "1700000000.000100", team_id="T1")
    assert found is not None
    assert found.id == job_id
    assert found.state == "open"
    assert store.job_for_thread("C1", "1700000000.000200", team_id="T1") is None
    # The same channel and ts seen from another workspace (a Slack Connect channel) is not it.
    assert store.job_for_thread("C1", "1700000000.000100", team_id="T2") is None


def test_followups_are_numbered_in_order(store: Store) -> None:
    job_id, _ = new_job(store)
    first = followup(store, job_id, "2.1")
    second = followup(store, job_id, "2.2")
    assert first is not None
    assert second is not None
    assert [(r.number, r.kind) for r in store.runs(job_id)] == [
        (1, "create"),
        (2, "followup"),
        (3, "followup"),
    ]
    assert sum(1 for r in store.runs(job_id) if r.state == "waiting") == 3


def test_the_same_reply_twice_makes_one_followup(store: Store) -> None:
    job_id, _ = new_job(store)
    assert followup(store, job_id, "2.1") is not None
    assert followup(store, job_id, "2.1") is None
    assert len(store.runs(job_id)) == 2


def test_a_redelivered_event_makes_no_second_followup(store: Store) -> None:
    job_id, _ = new_job(store)
    assert followup(store, job_id, "2.1", ("Ev1",)) is not None
    # Same delivery, seen as another reply (e.g. app_mention and message for one post).
    assert followup(store, job_id, "2.9", ("Ev1",)) is None
    assert len(store.runs(job_id)) == 2


def test_event_keys_are_claimed_all_or_nothing(store: Store) -> None:
    job_id, _ = new_job(store)
    assert followup(store, job_id, "2.1", ("Ev-a", "Ev-b")) is not None
    # Ev-b is taken, so the whole claim fails and Ev-c stays free.
    assert followup(store, job_id, "2.2", ("Ev-c", "Ev-b")) is None
    assert store.claim_event("Ev-c", T0) is True
    assert len(store.runs(job_id)) == 2


def test_claim_event_is_true_once(store: Store) -> None:
    assert store.claim_event("Ev1", T0) is True
    assert store.claim_event("Ev1", T0 + 5) is False


def test_forgotten_events_can_be_claimed_again(store: Store) -> None:
    store.claim_event("old", T0)
    store.claim_event("new", T0 + 100)
    store.forget_events_before(T0 + 50)
    assert store.claim_event("old", T0 + 200) is True
    assert store.claim_event("new", T0 + 200) is False


def test_a_job_claims_its_keys_once_and_variation_claims_are_kept(store: Store) -> None:
    first = store.create_job(
        team_id="T1", channel_id="C1", requester="U1", response_url=None, request=REQUEST,
        sandbox=True, now=T0, event_keys=["variation:7"],
    )  # fmt: skip
    again = store.create_job(
        team_id="T1", channel_id="C1", requester="U1", response_url=None, request=REQUEST,
        sandbox=True, now=T0, event_keys=["variation:7"],
    )  # fmt: skip
    assert first is not None and again is None
    assert len(store.recent_jobs("T1", "U1")) == 1
    store.forget_events_before(T0 + 10**9)
    assert store.claim_event("variation:7", T0) is False


def test_a_reply_error_is_recorded_once_per_delivery(store: Store) -> None:
    job_id, _ = new_job(store)
    assert store.record_reply_error(job_id, ["Ev9"], post("usage_error"), T0) is True
    assert store.record_reply_error(job_id, ["Ev9"], post("usage_error"), T0) is False
    assert [p.kind for p in store.open_posts(job_id)] == ["usage_error"]


# ---------------------------------------------------------------- the poller's queue


def test_claim_due_leases_due_jobs_oldest_first_and_no_one_else_takes_them(path: str) -> None:
    store, other = Store(path, instance="one"), Store(path, instance="two")
    try:
        late, _ = new_job(store, channel="C1", now=T0 + 30)
        early, _ = new_job(store, channel="C2", now=T0 + 10)
        middle, _ = new_job(store, channel="C3", now=T0 + 20)
        new_job(store, channel="C4", now=T0 + 500)  # not due yet
        claimed = store.claim_due(T0 + 100, limit=10)
        assert claimed == [(early, T0 + 10), (middle, T0 + 20), (late, T0 + 30)]
        for job_id in (early, middle, late):
            job = store.job(job_id)
            assert job is not None
            assert job.lease_owner == store.owner
            assert job.lease_until == T0 + 100 + LEASE_SECONDS
        assert store.claim_due(T0 + 100, limit=10) == []
        assert other.claim_due(T0 + 100, limit=10) == []  # leased: not another's to take
        assert store.next_due_at(T0 + 100) == T0 + 500  # held jobs do not count as due
        assert store.count_followed() == 4
        assert store.held_jobs() == 3
        assert other.held_jobs() == 0
    finally:
        store.close()
        other.close()


def test_instances_starting_together_migrate_once_and_claim_disjoint_jobs(path: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda i: Store(path, instance=f"i{i}"), range(4)))
    try:
        assert sorted(len(s.migrated) for s in stores) == [0, 0, 0, len(migration_names())]
        jobs = {new_job(stores[0], channel=f"C{i}")[0] for i in range(40)}
        with ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda s: s.claim_due(T0 + 1, limit=15), stores))
        taken = [job_id for batch in batches for job_id, _ in batch]
        assert len(taken) == len(set(taken)) == 40  # no job leased twice
        assert set(taken) == jobs
    finally:
        for s in stores:
            s.close()


def test_claim_due_respects_the_limit(store: Store) -> None:
    jobs = [new_job(store, channel=f"C{i}", now=T0 + i)[0] for i in range(5)]
    claimed = store.claim_due(T0 + 100, limit=2)
    assert [c[0] for c in claimed] == [jobs[0], jobs[1]]
    untouched = store.job(jobs[2])
    assert untouched is not None
    assert untouched.due_at == T0 + 2
    assert untouched.lease_owner is None


def test_a_dead_instances_jobs_are_taken_over_once_its_lease_expires(path: str) -> None:
    dead, alive = Store(path, instance="dead"), Store(path, instance="alive")
    try:
        job_id, _ = new_job(dead)
        assert dead.claim_due(T0, limit=10) == [(job_id, T0)]
        assert alive.claim_due(T0 + LEASE_SECONDS - 1, limit=10) == []
        assert alive.claim_due(T0 + LEASE_SECONDS + 1, limit=10) == [(job_id, T0)]
        assert not dead.release(job_id, T0 + 500, T0 + LEASE_SECONDS + 2)  # too late: refused
        job = alive.job(job_id)
        assert job is not None
        assert (job.lease_owner, job.due_at) == (alive.owner, T0)
    finally:
        dead.close()
        alive.close()


def test_renewing_keeps_the_lease_and_release_all_frees_every_job(path: str) -> None:
    store, other = Store(path, instance="one"), Store(path, instance="two")
    try:
        jobs = [new_job(store, channel=f"C{i}")[0] for i in range(3)]
        store.claim_due(T0, limit=10)
        assert store.renew_leases(T0 + 20) == 3
        assert other.claim_due(T0 + LEASE_SECONDS + 1, limit=10) == []  # renewed at T0 + 20
        assert store.release_all() == 3  # SIGTERM: free at once
        assert sorted(j for j, _ in other.claim_due(T0 + 21, limit=10)) == jobs
    finally:
        store.close()
        other.close()


def test_a_restarted_instance_takes_back_the_leases_its_killed_predecessor_held(path: str) -> None:
    killed = Store(path, instance="web.1")
    job_id, _ = new_job(killed)
    killed.claim_due(T0, limit=10)
    killed.close()  # SIGKILL: no release
    restarted, neighbour = Store(path, instance="web.1"), Store(path, instance="web.2")
    try:
        assert neighbour.release_predecessors() == 0  # not its own
        assert restarted.release_predecessors() == 1
        assert restarted.claim_due(T0 + 1, limit=10) == [(job_id, T0)]
    finally:
        restarted.close()
        neighbour.close()


def test_a_write_from_an_instance_whose_lease_was_taken_over_is_refused(path: str) -> None:
    paused, other = Store(path, instance="paused"), Store(path, instance="other")
    try:
        job_id, run_id = new_job(paused)
        paused.claim_due(T0, limit=1)
        other.claim_due(T0 + LEASE_SECONDS + 1, limit=1)  # the paused one's lease ran out
        with pytest.raises(LeaseLost), lease_fence(job_id, paused.owner):
            paused.mark_sending(run_id, baseline_completed_at=None, baseline_url=None, now=T0)
        with pytest.raises(LeaseLost), lease_fence(job_id, paused.owner):
            paused.finish_run(run_id, job_id, state="done", posts=[post("result")], now=T0)
        run = other.run(run_id)
        assert run is not None
        assert run.state == "waiting"
        assert other.open_posts(job_id) == []
        with lease_fence(job_id, other.owner):  # the holder writes as usual
            other.mark_sending(run_id, baseline_completed_at=None, baseline_url=None, now=T0)
        assert other.interrupted_runs(T0 + 2) == []  # held by a live lease: not interrupted
        assert [r.id for r in other.interrupted_runs(T0 + 3 * LEASE_SECONDS)] == [run_id]
    finally:
        paused.close()
        other.close()


def test_a_wake_while_leased_makes_the_holder_look_again_at_once(store: Store) -> None:
    job_id, _ = new_job(store)
    store.claim_due(T0, limit=1)
    store.wake(job_id, T0 + 5)
    assert store.release(job_id, None, T0 + 6)
    job = store.job(job_id)
    assert job is not None
    assert (job.due_at, job.woken, job.lease_owner) == (T0 + 6, False, None)
    store.claim_due(T0 + 6, limit=1)
    assert store.release(job_id, None, T0 + 7)
    job = store.job(job_id)
    assert job is not None
    assert job.due_at is None


def test_wake_only_brings_a_due_time_forward(store: Store) -> None:
    job_id, _ = new_job(store)
    store.set_due(job_id, T0 + 100)
    store.wake(job_id, T0 + 50)
    assert store.next_due_at(T0) == T0 + 50
    store.wake(job_id, T0 + 80)
    assert store.next_due_at(T0) == T0 + 50


# ---------------------------------------------------------------- settling runs


def test_finish_run_settles_once_and_records_its_posts(store: Store) -> None:
    job_id, run_id = new_job(store)
    store.mark_sending(run_id, baseline_completed_at=None, baseline_url=None, now=T0)
    store.mark_running(run_id, job_id, "motion-job-1", T0)
    sources = [{"source_kind": "music", "provider": "x"}]
    done = store.finish_run(
        run_id,
        job_id,
        state="done",
        posts=[
            NewPost("result", {"text": "r"}, broadcast=True),
            NewPost("notice", {"text": "n"}, channel_id="C9", thread=False),
        ],
        now=T0 + 60,
        download_url="https://cdn.example/1.mp4",
        completed_at="2026-04-28T23:01:23.695Z",
        sources=sources,
    )
    assert done is True
    again = store.finish_run(run_id, job_id, state="failed", posts=[post("dup")], now=T0 + 61)
    assert again is False
    run = store.run(run_id)
    assert run is not None
    assert run.state == "done"
    assert run.download_url == "https://cdn.example/1.mp4"
    assert run.sources == sources
    posts = store.open_posts(job_id)
    assert [p.kind for p in posts] == ["result", "notice"]
    assert (posts[0].channel_id, posts[0].thread_ts) == ("C1", "1.1")
    assert (posts[1].channel_id, posts[1].thread_ts) == ("C9", None)
    assert posts[0].broadcast is True
    assert posts[0].payload == {"text": "r"}
    assert posts[1].broadcast is False


def test_finish_run_that_fails_midway_leaves_nothing_behind(store: Store) -> None:
    job_id, run_id = new_job(store)
    unwritable = NewPost("result", {"not json": object()})
    with pytest.raises(TypeError):
        store.finish_run(
            run_id, job_id, state="done", posts=[post("first"), unwritable], now=T0 + 1
        )
    run = store.run(run_id)
    assert run is not None
    assert run.state == "waiting"
    assert store.open_posts(job_id) == []
    assert store.finish_run(run_id, job_id, state="done", posts=[post("ok")], now=T0 + 2)


def test_posts_leave_the_outbox_when_sent_and_return_when_a_send_fails(store: Store) -> None:
    job_id, _ = new_job(store)
    for each in (post("a"), post("b")):
        assert store.record_reply_error(job_id, [], each, T0)
    first, second = store.open_posts(job_id)
    store.mark_post_sending(first.id, T0)
    store.mark_post_done(first.id, "1.2")
    store.mark_post_sending(second.id, T0)
    store.mark_post_failed(second.id, "ratelimited", give_up=False)
    [left] = store.open_posts(job_id)
    assert (left.id, left.state, left.attempts) == (second.id, "due", 1)
    store.mark_post_failed(second.id, "channel_not_found", give_up=True)
    assert store.open_posts(job_id) == []


# ---------------------------------------------------------------- after a restart


def test_a_run_that_was_being_sent_is_reported_as_interrupted(path: str) -> None:
    store = Store(path)
    job_id, run_id = new_job(store)
    new_job(store, channel="C2")  # still waiting: not interrupted
    store.mark_sending(run_id, baseline_completed_at=None, baseline_url=None, now=T0)
    store.close()  # the process dies mid-call
    reopened = Store(path)
    try:
        assert [r.id for r in reopened.interrupted_runs()] == [run_id]
        assert reopened.runs(job_id)[0].state == "sending"
    finally:
        reopened.close()


def test_resume_all_makes_unfinished_jobs_due_and_leaves_settled_ones(store: Store) -> None:
    fresh, _ = new_job(store, channel="C1", thread_ts=None)
    running, running_run = new_job(store, channel="C2")
    store.mark_running(running_run, running, "m-2", T0)
    settled, settled_run = new_job(store, channel="C3")
    store.finish_run(settled_run, settled, state="done", posts=[], now=T0)
    unsent, unsent_run = new_job(store, channel="C4")
    store.finish_run(unsent_run, unsent, state="done", posts=[post("result")], now=T0)
    stopped, stopped_run = new_job(store, channel="C5")
    store.stop_job(stopped, stopped_run, "404", [], T0)
    for job_id in (fresh, running, settled, unsent, stopped):
        store.set_due(job_id, None)

    assert store.resume_all(T0 + 10) == 3
    due = {j for j, _ in store.claim_due(T0 + 10, limit=10)}
    assert due == {fresh, running, unsent}


def test_copy_run_sends_an_unknown_run_again_only_once(store: Store) -> None:
    job_id, run_id = new_job(store)
    store.finish_run(run_id, job_id, state="unknown", posts=[], now=T0)
    copy = store.copy_run(run_id, "U2", T0 + 5)
    assert copy is not None
    assert store.copy_run(run_id, "U2", T0 + 6) is None
    runs = store.runs(job_id)
    assert [(r.number, r.state) for r in runs] == [(1, "retried"), (2, "waiting")]
    assert runs[1].request == REQUEST
    assert runs[1].author == "U2"


def test_copy_run_refuses_a_run_that_is_not_unknown_or_rejected(store: Store) -> None:
    job_id, run_id = new_job(store)
    assert store.copy_run(run_id, "U2", T0) is None
    store.finish_run(run_id, job_id, state="done", posts=[], now=T0)
    assert store.copy_run(run_id, "U2", T0) is None
    assert len(store.runs(job_id)) == 1


def test_a_failed_commit_does_not_leave_the_transaction_open(path: str) -> None:
    store = Store(path)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), store._write() as conn:
        conn.execute("INSERT INTO events (key, received_at) VALUES ('a', 1)")
        conn.execute("INSERT INTO events (key, received_at) VALUES ('a', 2)")  # unique key
    if store.dialect == "sqlite":
        assert not store.db.conn.in_transaction
    assert store.claim_event("a", 3.0)  # rolled back, and the next write works
    store.close()


@pytest.mark.sqlite_only
def test_a_database_from_before_m002_keeps_its_cards_and_loses_only_dead_columns(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.db")
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    from bot.store.migrations import m001_initial

    first_only = Migrations("motion-bot")
    first_only()(m001_initial)
    db = Database(path)
    first_only.apply(db)
    for job_id, card_hash in ((1, "posting"), (2, "running:1:0|0123abcd"), (3, None)):
        db["jobs"].insert(
            {
                "id": job_id, "team_id": "T1", "channel_id": "C1", "requester": "U1",
                "prompt": "p", "state": "open", "created_at": T0 + job_id,
                "card_hash": card_hash, "status_calls": 4, "motion_url": "https://x",
            }
        )  # fmt: skip
    db.close()

    store = Store(path)
    jobs = {j: store.job(j) for j in (1, 2, 3)}
    assert [(j.card_sent_at, j.card_phase, j.card_digest) for j in jobs.values() if j] == [
        (T0 + 1, None, None),
        (None, "running:1:0", "0123abcd"),
        (None, None, None),
    ]
    columns = set(store.db["jobs"].columns_dict)
    assert not columns & {"card_hash", "status_calls", "motion_url", "motion_status"}
    assert "started_at" not in store.db["runs"].columns_dict
    assert {tuple(i.columns) for i in store.db["jobs"].indexes} >= {
        ("due_at",),
        ("team_id", "channel_id", "thread_ts"),  # m013: a thread is its workspace's only
    }
    store.close()


# ---------------------------------------------------------------- the poller's read


def test_job_and_runs_reads_the_job_and_its_runs_in_order_in_one_statement(store: Store) -> None:
    job_id, first = new_job(store)
    second = followup(store, job_id, "2.2")
    assert second is not None
    other, _ = new_job(store, channel="C2", thread_ts="3.3")  # its runs must not mix in
    statements = []
    execute = store.backend.execute

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(sql, params)

    store.backend.execute = counted  # type: ignore[method-assign]
    job, runs = store.job_and_runs(job_id)
    store.backend.execute = execute  # type: ignore[method-assign]
    assert len(statements) == 1
    assert job == store.job(job_id)
    assert runs == store.runs(job_id)
    assert [r.id for r in runs] == [first, second]
    assert [r.number for r in runs] == [1, 2]
    assert store.job_and_runs(other)[1] == store.runs(other)
    assert store.job_and_runs(999_999) == (None, [])


# ---------------------------------------------------------------- a card on its way to Slack


def test_a_card_is_in_flight_from_before_it_is_posted_until_its_thread_is_recorded(
    store: Store,
) -> None:
    """A reply can name the card's thread before the app has recorded it: the intake waits
    while a card is in flight in the reply's channel (bot/jobs/mentions.py `late_thread`)."""
    job_id, _ = new_job(store, channel="C1", thread_ts=None)
    assert not store.card_in_flight(
        "C1", T0 - 30, team_id="T1"
    )  # not handed to Slack yet: no thread exists
    store.record_card_sending(job_id, T0 + 1)
    assert store.card_in_flight("C1", T0 - 30, team_id="T1")
    assert not store.card_in_flight(
        "C2", T0 - 30, team_id="T1"
    )  # another channel's replies do not wait
    assert not store.card_in_flight("C1", T0 - 30, team_id="T2")  # nor another workspace's
    assert not store.card_in_flight(
        "C1", T0 + 2, team_id="T1"
    )  # handed over too long ago: not awaited
    store.record_card(job_id, "5.5", "C1", "new", "digest", T0 + 2)
    assert not store.card_in_flight("C1", T0 - 30, team_id="T1")
    job = store.job_for_thread("C1", "5.5", team_id="T1")
    assert job is not None and job.id == job_id


def test_an_abandoned_card_is_not_in_flight(store: Store) -> None:
    job_id, _ = new_job(store, channel="C1", thread_ts=None)
    store.record_card_sending(job_id, T0 + 1)
    store.abandon_job(job_id, T0 + 2)
    assert not store.card_in_flight("C1", T0 - 30, team_id="T1")


@pytest.mark.postgres_only
def test_a_write_that_cannot_get_the_write_lock_fails_and_leaves_no_transaction_open(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another session holds the write lock past the caller's budget: the write gives up
    within it (lock_timeout set for the transaction), nothing kept, its connection goes back
    to the pool with no transaction open (the pool warns when it must roll one back), and the
    next write works."""
    import threading

    import psycopg

    from bot.store.dialect import PostgresBackend

    store = Store(path)
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(backend.url, autocommit=True) as other, other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(%s)", (backend.write_key,))
            locked.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with (
            caplog.at_level("WARNING", logger="psycopg.pool"),
            pytest.raises(DatabaseUnavailable) as raised,
            request_budget(0.8),
            store._write() as conn,
        ):
            conn.execute("INSERT INTO events (key, received_at) VALUES ('late', 1)")
        waited = time.monotonic() - started
    finally:
        done.set()
        holder.join()
    assert raised.value.reason == Reason.LOCKED and 0.7 <= waited < 1.5
    assert not [r for r in caplog.records if r.name.startswith("psycopg.pool")]
    assert store.claim_event("late", 2.0)  # nothing was kept, and writing works again
    store.close()
