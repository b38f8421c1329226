"""Which job to look at when: leases due jobs from the store and advances each on its own task.

The database holds every job's next due time and who is advancing it (a lease, renewed every
third of its length while this instance works), so any number of instances share the jobs: one
job is advanced by one instance at a time, a dead instance's jobs are taken over once its
leases expire, and SIGTERM gives them back at once. Every write a job's step makes is fenced by
its lease (`lease_fence`): after a takeover the old holder's writes are refused.

The poller's own statements (renew, claim, when next, release) run on the store's worker
threads (`Store.off_loop`), so the loop goes on serving acks and other jobs meanwhile.

The database away for a moment (`DatabaseUnavailable`) ends neither the poller nor a job: what
a look could not write is written by a later one, a job's look is tried again after the
store's retry delay (longer as the outage lasts), and nothing is logged here (the store says
once when the database goes and once when it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.store import (
    LEASE_SECONDS,
    DatabaseUnavailable,
    Job,
    LeaseLost,
    QuietPoll,
    Run,
    Store,
    holding_polls,
    lease_fence,
)
from bot.store.offloop import on_loop

log = logging.getLogger(__name__)
IDLE_WAIT = 5.0  # longest sleep between looks at the database when nothing is due
BATCH_SECONDS = 0.005
# The job and its runs as the claim read them: the look starts from these, not another read.
Claimed = tuple[Job, list[Run]]
UNEXPECTED_ERROR_DELAY = 30.0  # a bug in one job's step must not spin; the job stays followed


class Poller:
    def __init__(
        self,
        store: Store,
        advance: Callable[[int, Claimed | None], Awaitable[float | None]],
        *,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
        observe_lag: Callable[[float], None] | None = None,
        observe_takeovers: Callable[[int], None] | None = None,
    ) -> None:
        """`observe_lag` hears how late each look starts after its job fell due, and
        `observe_takeovers` how many jobs a claim took over from an instance that let their
        leases run out (bot/metrics.py; each None: not told)."""
        self.store = store
        self._observe_lag = observe_lag
        self._observe_takeovers = observe_takeovers
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
        # Jobs whose look ended, still leased, waiting to be given back with their next due
        # time by the next look at the database (one statement for all: `release_many`).
        self._finished: list[tuple[int, float | None]] = []
        # The quiet polls those looks held (`Store.hold_quiet_poll`), written just before.
        self._polls: list[QuietPoll] = []
        # Jobs woken while the database was away: woken by the next look that can write.
        self._wake_later: set[int] = set()

    @property
    def busy(self) -> int:
        return len(self._tasks)

    @property
    def alive(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def wake(self, job_id: int) -> None:
        """Something new for this job (a command, a reply, a button): look at it now (whichever
        instance holds it looks again as soon as its current look ends).

        Called right after what it wakes the job for was recorded: the database going away in
        between must not turn that into a failure, so the wake-up is then kept here and written
        by the poller's next look (a restart's `resume_all` finds such a job anyway)."""
        try:
            self.store.wake(job_id, self.clock())
        except DatabaseUnavailable:
            on_loop(lambda: self._wake_later.add(job_id))
        on_loop(self._event.set)  # asyncio.Event is the loop's own: never set from a worker

    def due_now(self, job_id: int) -> None:
        """A job recorded due now and held by nobody (a new one): `wake` without its write,
        which would change nothing such a job has (a command's ack waits for every statement:
        bot/store/jobs.py `create_job`). The poller looks at once."""
        on_loop(self._event.set)

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="poller")

    async def _run(self) -> None:
        while not self._stopping:
            timeout = IDLE_WAIT
            # Cleared before the look, not after: the look waits on a worker, and a wake-up or
            # a finished job arriving meanwhile must bring the next look at once.
            self._event.clear()
            try:  # a database hiccup must not end the loop: every job depends on it
                free = self.concurrency - len(self._tasks)
                heartbeat = bool(self._tasks) and (
                    self.clock() - self._renewed_at >= self.lease_seconds / 3
                )
                renew = list(self._tasks) if heartbeat else None
                finished, self._finished = self._finished, []
                polls, self._polls = self._polls, []
                woken, self._wake_later = self._wake_later, set()
                try:
                    due, next_due, claimed_at, taken_over = await self.store.off_loop(
                        self._look, finished, polls, renew, free, woken
                    )
                except BaseException:
                    # What the batch did not write is written at the next try (`_look`).
                    self._finished = finished + self._finished
                    self._polls = polls + self._polls
                    self._wake_later |= woken
                    raise
                self._start(due, claimed_at)
                if taken_over and self._observe_takeovers is not None:
                    self._observe_takeovers(taken_over)
                if next_due is not None and len(self._tasks) < self.concurrency:
                    timeout = min(IDLE_WAIT, max(0.0, next_due - self.clock()))
            except DatabaseUnavailable:  # said once by the store; looked at again shortly
                timeout = self.store.availability.retry_delay()
            except Exception:
                log.exception("poller: claiming due jobs failed; trying again shortly")
                timeout = 1.0
            timeout = min(timeout, self.lease_seconds / 3)  # the heartbeat's floor
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._event.wait()
            # Let a burst of wake-ups and finished jobs gather: one claim serves them all.
            await asyncio.sleep(BATCH_SECONDS)

    def _look(
        self,
        finished: list[tuple[int, float | None]],
        polls: list[QuietPoll],
        renew: list[int] | None,
        free: int,
        woken: set[int] | None = None,
    ) -> tuple[list[tuple[int, float, Claimed | None]], float | None, float, int]:
        """On a store worker: write the quiet polls of the looks that ended and give their jobs
        back, the heartbeat if due (`renew`: the jobs at work here), the wake-ups the database
        missed (`woken`), lease up to `free` due jobs and read them with their runs, and when
        the next one falls due; one hop off the loop for all. Returns (job, due at, job and
        runs as read) for each job leased, when the next falls due, when they were leased, and
        how many were taken over.

        What is written is taken out of `finished`, `polls` and `woken`, so a failure later in
        the batch gives back (at the next try) only what was not."""
        now = self.clock()
        try:
            self.store.record_quiet_polls(polls)  # first: each is fenced by its job's lease
        except DatabaseUnavailable:
            raise  # kept for the next look, which writes them
        except Exception:  # they only say when the run was last looked at: never hold up all
            log.exception("poller: the quiet polls of %d looks were not recorded", len(polls))
        polls.clear()
        self.store.release_many(finished, now)
        finished.clear()
        if renew is not None:
            self.store.renew_leases(now, lease_seconds=self.lease_seconds, job_ids=renew)
            self._renewed_at = now
        while woken:
            self.store.wake(min(woken), now)
            woken.discard(min(woken))
        if free <= 0:
            return [], None, now, 0
        claim = self.store.claim(now, free, lease_seconds=self.lease_seconds)
        claimed, taken_over = claim.jobs, claim.taken_over
        # Leased now: whatever fails below, each still gets its look (which reads for itself).
        due: list[tuple[int, float, Claimed | None]] = [(j, at, None) for j, at in claimed]
        try:
            if due:
                read = {job.id: (job, runs) for job, runs in self.store.jobs_and_runs(
                    [job_id for job_id, _ in claimed]
                )}  # fmt: skip
                due = [(job_id, at, read.get(job_id)) for job_id, at, _ in due]
            if len(due) >= free:  # every slot taken: when the next is due does not matter yet
                return due, None, now, taken_over
            return due, self.store.next_due_at(self.clock()), now, taken_over
        except DatabaseUnavailable:  # each look reads for itself (or backs off)
            return due, now + 1.0, now, taken_over
        except Exception:
            log.exception("poller: reading the jobs just leased failed; each reads its own")
            return due, now + 1.0, now, taken_over

    def _start(self, due: list[tuple[int, float, Claimed | None]], claimed_at: float) -> None:
        """On the loop: a task for each job just leased."""
        if due and not self._tasks:
            self._renewed_at = claimed_at
        for job_id, due_at, claimed in due:
            if job_id in self._tasks:  # our own lease lapsed while the loop was held up
                continue
            if self.lags is not None:
                self.lags.append(claimed_at - due_at)
            if self._observe_lag is not None:
                self._observe_lag(claimed_at - due_at)
            self._tasks[job_id] = asyncio.get_running_loop().create_task(
                self._advance(job_id, claimed)
            )

    async def _advance(self, job_id: int, claimed: Claimed | None) -> None:
        delay: float | None = 5.0
        lost = False
        held = None
        try:
            with lease_fence(job_id, self.store.owner), holding_polls(job_id) as held:
                delay = await self.advance(job_id, claimed)
        except asyncio.CancelledError:
            delay = 0.0
            raise
        except LeaseLost:
            log.warning(
                "job %s: another instance took it over; leaving it to them",
                job_id,
                extra={"job": job_id},
            )
            lost = True
        except DatabaseUnavailable:  # said once by the store: the job is looked at again soon
            delay = self.store.availability.retry_delay()
        except Exception:
            log.exception(
                "job %s: unexpected error; will look again shortly", job_id, extra={"job": job_id}
            )
            delay = UNEXPECTED_ERROR_DELAY
        finally:
            self.advanced += 1
            self._tasks.pop(job_id, None)
            if not lost:  # given back by the poller's next look at the database
                if held is not None:
                    self._polls.extend(held.polls)
                self._finished.append((job_id, None if delay is None else self.clock() + delay))
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
            polls, self._polls = self._polls, []
            await self.store.off_loop(self.store.record_quiet_polls, polls)
        with contextlib.suppress(Exception):
            finished, self._finished = self._finished, []
            await self.store.off_loop(self.store.release_many, finished, self.clock())
        with contextlib.suppress(Exception):
            await self.store.off_loop(self.store.release_all)  # another may take them at once
