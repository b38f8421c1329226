"""Spend in the store: runs counted in the transaction that records them, limits that hold
across connections at the same moment, counts given back once, previews started once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.spend import SpendPolicy
from bot.store import (
    LimitReached,
    LimitScope,
    NewPost,
    PreviewGone,
    PreviewKind,
    PreviewState,
    RunState,
    Spend,
    Store,
)

T0 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
REQUEST = {"prompt": "a fox", "style_url": None, "attachments": [], "aspect": None}


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "motion.db")


@pytest.fixture
def store(path: str) -> Iterator[Store]:
    opened = Store(path)
    yield opened
    opened.close()


def spend(
    user: str = "U1", *, day: int | None = None, month: int | None = None, token=None
) -> Spend:
    policy = SpendPolicy(runs_per_user_per_day=day, runs_per_month=month)
    return policy.spend("T1", user, T0 + 60, token)


def new_job(store: Store, s: Spend | None, *, user: str = "U1") -> tuple[int, int]:
    return store.create_job(
        team_id="T1", channel_id="C1", requester=user, response_url=None, request=REQUEST,
        sandbox=False, now=T0, spend=s,
    )  # fmt: skip


def usage(store: Store, user: str = "U1") -> tuple[int, int, int]:
    mine = store.usage_of("T1", user, "2025-12-01", "2025-12")
    return mine.today, mine.month, store.workspace_runs("T1", "2025-12")


def test_a_new_job_is_counted_for_its_person_today_this_month_and_for_the_workspace(
    store: Store,
) -> None:
    new_job(store, spend())
    new_job(store, spend())
    new_job(store, spend("U2"), user="U2")
    assert usage(store) == (2, 2, 3)
    assert usage(store, "U2") == (1, 1, 3)


def test_a_run_over_the_daily_limit_records_nothing_and_says_how_many_were_used(
    store: Store,
) -> None:
    new_job(store, spend(day=2))
    new_job(store, spend(day=2))
    with pytest.raises(LimitReached) as refused:
        new_job(store, spend(day=2))
    assert (refused.value.scope, refused.value.used, refused.value.limit) == (
        LimitScope.USER_DAY, 2, 2,
    )  # fmt: skip
    assert len(store.recent_jobs("T1", "U1")) == 2
    assert usage(store) == (2, 2, 2)
    new_job(store, spend("U2", day=2), user="U2")  # another person's day is their own


def test_the_workspace_limit_counts_everyone_and_a_refusal_leaves_no_partial_count(
    store: Store,
) -> None:
    new_job(store, spend("U1", month=2))
    new_job(store, spend("U2", month=2), user="U2")
    with pytest.raises(LimitReached) as refused:
        new_job(store, spend("U3", month=2, day=5), user="U3")
    assert refused.value.scope == LimitScope.WORKSPACE_MONTH
    assert usage(store, "U3") == (0, 0, 2)  # the day count taken first was rolled back


def test_a_followup_over_the_limit_is_not_queued_but_its_delivery_stays_claimed(
    store: Store,
) -> None:
    job_id, _ = new_job(store, spend(day=1))
    with pytest.raises(LimitReached):
        store.add_followup(
            job_id, REQUEST, "U1", "C1", "2.1", T0, event_keys=["event:E1"], spend=spend(day=1)
        )
    assert len(store.runs(job_id)) == 1
    # The redelivery of the same event is a duplicate, not a second refusal.
    again = store.add_followup(
        job_id, REQUEST, "U1", "C1", "2.1", T0, event_keys=["event:E1"], spend=spend(day=1)
    )
    assert again is None


def test_a_queued_followup_has_already_counted(store: Store) -> None:
    job_id, _ = new_job(store, spend(day=2))
    run_id = store.add_followup(job_id, REQUEST, "U1", "C1", "2.1", T0, spend=spend(day=2))
    assert run_id is not None and store.run(run_id).state == RunState.WAITING  # type: ignore[union-attr]
    assert usage(store) == (2, 2, 2)
    with pytest.raises(LimitReached):
        store.add_followup(job_id, REQUEST, "U1", "C1", "2.2", T0, spend=spend(day=2))


def test_a_run_refused_outright_gives_its_count_back_once(store: Store) -> None:
    job_id, run_id = new_job(store, spend(day=1))
    refused = [NewPost("bad_request", {"text": "no"})]
    assert store.finish_run(run_id, job_id, state=RunState.REJECTED, posts=refused, now=T0)
    assert usage(store) == (0, 0, 0)
    assert not store.finish_run(run_id, job_id, state=RunState.REJECTED, posts=refused, now=T0)
    assert usage(store) == (0, 0, 0)
    new_job(store, spend(day=1))  # the day's one run is free again


def test_a_failed_or_finished_run_keeps_its_count(store: Store) -> None:
    job_id, run_id = new_job(store, spend())
    store.finish_run(run_id, job_id, state=RunState.FAILED, posts=[], now=T0)
    assert usage(store) == (1, 1, 1)


def test_an_abandoned_job_and_a_stopped_jobs_waiting_followups_give_their_counts_back(
    store: Store,
) -> None:
    job_id, _ = new_job(store, spend())
    store.abandon_job(job_id, T0)
    assert usage(store) == (0, 0, 0)
    other, first = new_job(store, spend())
    store.mark_sending(first, baseline_completed_at=None, baseline_url=None, now=T0)
    store.mark_running(first, other, "mj1", T0)
    store.add_followup(other, REQUEST, "U1", "C1", "3.1", T0, spend=spend())
    assert usage(store) == (2, 2, 2)
    store.stop_job(other, first, "Motion no longer knows this job", [], T0)
    assert usage(store) == (1, 1, 1)  # the run that was sent keeps its count


def test_send_it_again_counts_and_refuses_over_the_limit(store: Store) -> None:
    job_id, run_id = new_job(store, spend(day=2))
    store.finish_run(run_id, job_id, state=RunState.UNKNOWN, posts=[], now=T0)
    assert usage(store) == (1, 1, 1)  # the answer was lost: it may have started
    assert store.copy_run(run_id, "U1", T0, spend(day=2)) is not None
    assert usage(store) == (2, 2, 2)
    new_job_id, new_run = new_job(store, None)
    store.finish_run(new_run, new_job_id, state=RunState.UNKNOWN, posts=[], now=T0)
    with pytest.raises(LimitReached):
        store.copy_run(new_run, "U1", T0, spend(day=2))
    assert store.run(new_run).state == RunState.UNKNOWN  # type: ignore[union-attr]


@pytest.mark.parametrize("day, month, users", [(3, None, 1), (None, 3, 8), (3, 3, 1), (3, 3, 2)])
def test_two_connections_at_the_limit_at_the_same_moment_record_exactly_the_limit(
    database_url: str, day: int | None, month: int | None, users: int
) -> None:
    """Instances share one database (one file, or one PostgreSQL): each thread has its own
    connection, all released at once; the increment that checks the limit is the lock (with
    no global write lock on PostgreSQL: the counters' row locks and their CHECK), so only the
    limit gets through, whichever limit it is and however many people ask."""
    stores = [Store(database_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def attempt(i: int, one: Store) -> None:
        barrier.wait()
        try:
            new_job(one, spend(f"U{i % users}", day=day, month=month), user=f"U{i % users}")
            outcomes.append("accepted")
        except LimitReached:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * 5
    jobs = sum(len(stores[0].recent_jobs("T1", f"U{i}")) for i in range(users))
    assert jobs == 3
    assert stores[0].workspace_runs("T1", "2025-12") == 3
    people = [stores[0].usage_of("T1", f"U{i}", "2025-12-01", "2025-12") for i in range(users)]
    assert sum(p.today for p in people) == sum(p.month for p in people) == 3
    for s in stores:
        s.close()


def test_one_click_pressed_on_many_instances_at_once_starts_one_job(database_url: str) -> None:
    """ "New variation" pressed (or redelivered) on 8 instances at the same moment: its claim
    is a unique key in the job's own write, so exactly one job exists and one run is counted,
    with no global write lock taken."""
    stores = [Store(database_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    created: list[tuple[int, int] | None] = []

    def press(one: Store) -> None:
        barrier.wait()
        created.append(
            one.create_job(
                team_id="T1",
                channel_id="C1",
                requester="U1",
                response_url=None,
                request=REQUEST,
                sandbox=False,
                now=T0,
                spend=spend(day=5),
                event_keys=("variation:41",),
            )
        )

    threads = [threading.Thread(target=press, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([c for c in created if c is not None]) == 1
    assert len(stores[0].recent_jobs("T1", "U1")) == 1
    assert usage(stores[0]) == (1, 1, 1)
    for s in stores:
        s.close()


def test_a_preview_is_started_once_however_often_start_arrives(store: Store) -> None:
    assert store.save_preview(
        token="tok1", kind=PreviewKind.NEW_JOB, team_id="T1", channel_id="C1", user_id="U1",
        now=T0, request=REQUEST,
    )  # fmt: skip
    new_job(store, spend(token="tok1"))
    with pytest.raises(PreviewGone):
        new_job(store, spend(token="tok1"))
    assert len(store.recent_jobs("T1", "U1")) == 1
    assert usage(store) == (1, 1, 1)
    assert store.preview("tok1").state == PreviewState.STARTED  # type: ignore[union-attr]
    assert not store.cancel_preview("tok1")


def test_a_preview_refused_at_the_limit_stays_unstarted_and_a_cancelled_one_cannot_start(
    store: Store,
) -> None:
    for token in ("tokA", "tokB"):
        store.save_preview(
            token=token, kind=PreviewKind.NEW_JOB, team_id="T1", channel_id="C1", user_id="U1",
            now=T0, request=REQUEST,
        )  # fmt: skip
    new_job(store, spend(day=1))
    with pytest.raises(LimitReached):
        new_job(store, spend(day=1, token="tokA"))
    assert store.preview("tokA").state == PreviewState.PENDING  # type: ignore[union-attr]
    assert store.cancel_preview("tokB")
    with pytest.raises(PreviewGone):
        new_job(store, spend(token="tokB"))
    assert usage(store) == (1, 1, 1)


def test_a_reply_preview_claims_its_delivery(store: Store) -> None:
    args = dict(kind=PreviewKind.FOLLOWUP, team_id="T1", channel_id="C1", user_id="U1", now=T0)
    assert store.save_preview(token="t1", event_keys=["event:E9"], **args)  # type: ignore[arg-type]
    assert not store.save_preview(token="t2", event_keys=["event:E9"], **args)  # type: ignore[arg-type]
    assert store.preview("t2") is None


def test_everyones_usage_is_listed_busiest_first_without_the_workspace_row(store: Store) -> None:
    for user, runs in (("U1", 1), ("U2", 3), ("U3", 2)):
        for _ in range(runs):
            new_job(store, spend(user), user=user)
    rows = store.everyone_usage("T1", "2025-12-01", "2025-12")
    assert [(r.user_id, r.today, r.month) for r in rows] == [
        ("U2", 3, 3), ("U3", 2, 2), ("U1", 1, 1),
    ]  # fmt: skip


def test_a_commands_write_is_one_statement_on_postgresql_and_one_transaction_on_sqlite(
    database_url: str,
) -> None:
    """Every command's ack waits for its write: on PostgreSQL one statement (one round trip),
    on SQLite one transaction of four (the three counters in one, the job, its run, what the
    run was counted as). At a limit nothing changes, and the refusal says which limit and how
    many were used."""
    store = Store(database_url)
    alone: list[str] = []
    transactions: list[list[str]] = []
    execute, write = store.backend.execute, store.backend.write

    def recorded(sql: str, params: Any = ()) -> Any:
        alone.append(sql)
        return execute(sql, params)

    class Recording:
        def __init__(self, tx: Any, statements: list[str]) -> None:
            self.tx, self.statements = tx, statements

        def execute(self, sql: str, params: Any = ()) -> Any:
            self.statements.append(sql)
            return self.tx.execute(sql, params)

    @contextmanager
    def counted(**kwargs: Any) -> Iterator[Any]:
        transactions.append([])
        with write(**kwargs) as tx:
            yield Recording(tx, transactions[-1])

    store.backend.execute = recorded  # type: ignore[method-assign]
    store.backend.write = counted  # type: ignore[method-assign]
    try:
        new_job(store, spend(day=2, month=100))
        if store.dialect == "postgresql":
            assert transactions == [] and len(alone) == 1
            assert "usage_counts" in alone[0] and "run_spend" in alone[0]
        else:
            assert alone == [] and len(transactions) == 1 and len(transactions[0]) == 4
            assert len([s for s in transactions[0] if "usage_counts" in s]) == 1
        new_job(store, spend(day=2, month=100))
        with pytest.raises(LimitReached) as refused:
            new_job(store, spend(day=2, month=100))
    finally:
        store.backend.execute = execute  # type: ignore[method-assign]
        store.backend.write = write  # type: ignore[method-assign]
    assert (refused.value.scope, refused.value.used, refused.value.limit) == (
        LimitScope.USER_DAY, 2, 2,
    )  # fmt: skip
    assert usage(store) == (2, 2, 2)  # the refused one counted nowhere
    assert len(store.recent_jobs("T1", "U1")) == 2
    store.close()


def test_a_write_that_raises_half_way_keeps_nothing_and_the_next_write_works(
    database_url: str,
) -> None:
    store = Store(database_url)
    with pytest.raises(RuntimeError), store._write() as conn:
        conn.execute("INSERT INTO events (key, received_at) VALUES ('half', 1)")
        raise RuntimeError("half-way")
    assert store.claim_event("half", 2.0)  # nothing of it was kept
    assert not store.claim_event("half", 3.0)
    store.close()
