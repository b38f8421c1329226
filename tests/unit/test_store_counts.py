"""What the store tells the metrics (a SQLite file, or PostgreSQL with TEST_DATABASE_URL): jobs
by state, the messages waiting in the outbox and the oldest one's age, and the leases a claim
took over from an instance that let them run out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.store import LEASE_SECONDS, NewPost, Store
from tests.unit.test_store import T0, new_job


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def test_jobs_are_counted_by_state(store: Store) -> None:
    assert store.jobs_by_state() == {}
    new_job(store, channel="C1", thread_ts=None)  # its card not posted yet: new
    opened, run_id = new_job(store, channel="C2")
    new_job(store, channel="C3")
    store.stop_job(opened, run_id, "stopped by hand", [], T0 + 5)
    assert store.jobs_by_state() == {"new": 1, "open": 1, "stopped": 1}


def test_the_outbox_counts_messages_waiting_and_when_the_oldest_was_recorded(
    store: Store,
) -> None:
    assert store.outbox_waiting() == (0, None)
    job_id, run_id = new_job(store)
    message = NewPost(kind="result", payload={"text": "done"})
    video = NewPost(kind="upload", payload={"url": "https://cdn.example/v.mp4"})
    store.finish_run(run_id, job_id, state="done", posts=[message, video], now=T0 + 10)
    count, oldest = store.outbox_waiting()
    assert count == 1 and oldest == pytest.approx(T0 + 10)  # the upload runs on its own
    [post] = store.open_posts(job_id)
    store.mark_post_sending(post.id, T0 + 11)
    assert store.outbox_waiting()[0] == 1  # sent, answer unknown: still waiting
    store.mark_post_done(post.id, "1.2")
    assert store.outbox_waiting() == (0, None)


def test_a_claim_tells_the_leases_it_took_over_from_another_instance(database_url: str) -> None:
    dead, alive = Store(database_url, instance="dead"), Store(database_url, instance="alive")
    try:
        held, _ = new_job(dead, channel="C1")
        free, _ = new_job(dead, channel="C2", now=T0 + 1)
        first = dead.claim(T0, limit=1)
        assert first.jobs == [(held, T0)] and first.taken_over == 0
        later = alive.claim(T0 + LEASE_SECONDS + 1, limit=10)
        assert sorted(later.jobs) == [(held, T0), (free, T0 + 1)]
        assert later.taken_over == 1  # `free` was nobody's
    finally:
        dead.close()
        alive.close()


def test_a_lease_an_instance_let_lapse_itself_is_not_a_takeover(store: Store) -> None:
    job_id, _ = new_job(store)
    assert store.claim(T0, limit=1).jobs == [(job_id, T0)]
    again = store.claim(T0 + LEASE_SECONDS + 1, limit=1)  # its own loop was held up
    assert again.jobs == [(job_id, T0)] and again.taken_over == 0


def test_claim_due_is_the_claims_jobs(store: Store) -> None:
    job_id, _ = new_job(store)
    assert store.claim_due(T0, limit=5) == [(job_id, T0)]
    assert store.claim(T0 + 1, limit=5).jobs == []  # leased: not due again for anyone
