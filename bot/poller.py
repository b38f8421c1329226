"""Which job to look at when: leases due jobs from the store and advances each on its own task.

The database holds every job's next due time and who is advancing it (a lease, renewed every
third of its length while this instance works), so any number of instances share the jobs: one
job is advanced by one instance at a time, a dead instance's jobs are taken over once its
leases expire, and SIGTERM gives them back at once. Every write a job's step makes is fenced by
its lease (`lease_fence`): after a takeover the old holder's writes are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.store import LEASE_SECONDS, LeaseLost, Store, lease_fence

log = logging.getLogger(__name__)
IDLE_WAIT = 5.0  # longest sleep between looks at the database when nothing is due
BATCH_SECONDS = 0.005
UNEXPECTED_ERROR_DELAY = 30.0  # a bug in one job's step must not spin; the job stays followed


class Poller:
    def __init__(
        self,
        store: Store,
        advance: Callable[[int], Awaitable[float | None]],
        *,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self._renewed_at = -float("inf")
        self.advance = advance
        self.concurrency = concurrency
        self.clock = clock
        self._tasks: dict[int, asyncio.Task[None]] = {}  # this instance's leased jobs at work
        self._event = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self.advanced = 0
        self.lags: list[float] | None = None  # benchmarks set a list to record scheduling lag

    @property
    def busy(self) -> int:
        return len(self._tasks)

    @property
    def alive(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def wake(self, job_id: int) -> None:
        """Something new for this job (a command, a reply, a button): look at it now (whichever
        instance holds it looks again as soon as its current look ends)."""
        self.store.wake(job_id, self.clock())
        self._event.set()

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="poller")

    async def _run(self) -> None:
        while not self._stopping:
            timeout = IDLE_WAIT
            try:  # a database hiccup must not end the loop: every job depends on it
                self._renew()
                self._claim_due()
                next_due = self.store.next_due_at(self.clock())
                if next_due is not None and len(self._tasks) < self.concurrency:
                    timeout = min(IDLE_WAIT, max(0.0, next_due - self.clock()))
            except Exception:
                log.exception("poller: claiming due jobs failed; trying again shortly")
                timeout = 1.0
            self._event.clear()
            timeout = min(timeout, self.lease_seconds / 3)  # the heartbeat's floor
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout)
            # Let a burst of wake-ups and finished jobs gather: one claim serves them all.
            await asyncio.sleep(BATCH_SECONDS)

    def _renew(self) -> None:
        now = self.clock()
        if self._tasks and now - self._renewed_at >= self.lease_seconds / 3:
            self.store.renew_leases(now, lease_seconds=self.lease_seconds)
            self._renewed_at = now

    def _claim_due(self) -> None:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return
        now = self.clock()
        due = self.store.claim_due(now, free, lease_seconds=self.lease_seconds)
        if due and not self._tasks:
            self._renewed_at = now
        for job_id, due_at in due:
            if job_id in self._tasks:  # our own lease lapsed while the loop was held up
                continue
            if self.lags is not None:
                self.lags.append(now - due_at)
            self._tasks[job_id] = asyncio.get_running_loop().create_task(self._advance(job_id))

    async def _advance(self, job_id: int) -> None:
        delay: float | None = 5.0
        lost = False
        try:
            with lease_fence(job_id, self.store.owner):
                delay = await self.advance(job_id)
        except asyncio.CancelledError:
            delay = 0.0
            raise
        except LeaseLost:
            log.warning("job %s: another instance took it over; leaving it to them", job_id)
            lost = True
        except Exception:
            log.exception("job %s: unexpected error; will look again shortly", job_id)
            delay = UNEXPECTED_ERROR_DELAY
        finally:
            self.advanced += 1
            self._tasks.pop(job_id, None)
            if not lost:
                now = self.clock()
                with contextlib.suppress(Exception):
                    self.store.release(job_id, None if delay is None else now + delay, now)
            self._event.set()

    async def stop(self, timeout: float = 25.0) -> None:
        """Stop claiming, give in-flight work `timeout` seconds, leave the rest resumable."""
        self._stopping = True
        self._event.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        with contextlib.suppress(Exception):
            self.store.release_all()  # another instance may take them at once
