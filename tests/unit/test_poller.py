"""The poller with an injected clock and a recording `advance`: which job runs when."""

from __future__ import annotations

import asyncio

from bot.poller import Claimed, Poller
from bot.store import Store
from tests.support.harness import until


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(database_url: str, due: list[float | None]) -> tuple[Store, list[int]]:
    store = Store(database_url)
    ids = []
    for at in due:
        job_id, _ = store.create_job(
            team_id="T", channel_id="C", requester="U", response_url=None,
            request={"prompt": "x"}, sandbox=False, now=0.0,
        )  # fmt: skip
        store.set_due(job_id, at)
        ids.append(job_id)
    return store, ids


async def test_only_due_jobs_are_advanced_in_due_order(database_url: str) -> None:
    store, ids = make_store(database_url, [1005.0, 990.0, 2000.0, None])
    clock, seen = Clock(), []

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        seen.append(job_id)
        return 500.0

    poller = Poller(store, advance, concurrency=1, clock=clock)
    poller.lags = []
    poller.start()
    await until(lambda: seen == [ids[1]])
    clock.now = 1010.0
    poller.wake(ids[3])  # a new command: due now
    await until(lambda: seen == [ids[1], ids[0], ids[3]] or seen == [ids[1], ids[3], ids[0]])
    await asyncio.sleep(0.05)
    assert ids[2] not in seen  # not due until 2000
    await poller.stop(1)
    assert poller.lags[0] == 10.0  # due at 990, claimed at 1000
    # Every advanced job got its next due time back from `advance` (clock + 500).
    assert store.job(ids[1]).due_at == 1500.0  # type: ignore[union-attr]
    store.close()


async def test_a_wake_during_an_advance_advances_the_job_again_at_once(database_url: str) -> None:
    store, ids = make_store(database_url, [0.0])
    clock, calls = Clock(), []
    gate = asyncio.Event()

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        calls.append(job_id)
        if len(calls) == 1:
            await gate.wait()
        return None  # nothing more to do... unless woken meanwhile

    poller = Poller(store, advance, clock=clock)
    poller.start()
    await until(lambda: calls == [ids[0]])
    poller.wake(ids[0])  # a followup arrives while the job is being advanced
    gate.set()
    await until(lambda: len(calls) == 2)
    await poller.stop(1)
    store.close()


async def test_a_failing_advance_is_retried_later_not_lost(database_url: str) -> None:
    store, ids = make_store(database_url, [0.0])
    clock = Clock()

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        raise RuntimeError("boom")

    poller = Poller(store, advance, clock=clock)
    poller.start()
    await until(lambda: poller.advanced == 1)
    await poller.stop(1)
    assert store.job(ids[0]).due_at == clock.now + 30.0  # type: ignore[union-attr]
    store.close()


async def test_stop_abandons_slow_work_and_leaves_the_job_due(database_url: str) -> None:
    store, ids = make_store(database_url, [0.0])
    clock = Clock()

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        await asyncio.sleep(60)
        return None

    poller = Poller(store, advance, clock=clock)
    poller.start()
    await until(lambda: poller.busy == 1)
    assert store.job(ids[0]).lease_owner == store.owner  # type: ignore[union-attr]  # leased
    await poller.stop(0.1)
    job = store.job(ids[0])
    assert job is not None
    assert (job.due_at, job.lease_owner) == (clock.now, None)  # resumable, by anyone
    store.close()


async def test_two_pollers_on_one_database_never_advance_the_same_job_at_once(
    database_url: str,
) -> None:
    store, ids = make_store(database_url, [0.0] * 30)
    other = Store(database_url, instance="second")
    clock, running, overlaps, done = Clock(), set[int](), [], list[int]()

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        if job_id in running:
            overlaps.append(job_id)
        running.add(job_id)
        await asyncio.sleep(0.01)
        running.discard(job_id)
        done.append(job_id)
        return 0.0 if done.count(job_id) < 3 else None

    pollers = [Poller(s, advance, concurrency=8, clock=clock) for s in (store, other)]
    for poller in pollers:
        poller.start()
    await until(lambda: len(done) == 90)
    for poller in pollers:
        await poller.stop(1)
    assert overlaps == []
    assert sorted(set(done)) == ids
    assert all(p.advanced > 0 for p in pollers)  # both took a share
    other.close()
    store.close()


async def test_a_poller_renews_its_leases_while_a_job_takes_long(database_url: str) -> None:
    store, ids = make_store(database_url, [0.0])
    clock, gate = Clock(), asyncio.Event()

    async def advance(job_id: int, claimed: Claimed | None) -> float | None:
        await gate.wait()
        return None

    poller = Poller(store, advance, clock=clock, lease_seconds=0.3)
    poller.start()
    await until(lambda: poller.busy == 1)
    first = store.job(ids[0]).lease_until  # type: ignore[union-attr]
    clock.now += 0.2
    await until(lambda: store.job(ids[0]).lease_until != first)  # type: ignore[union-attr]
    gate.set()
    await poller.stop(1)
    store.close()
