"""Which job to look at when: claims due jobs from the store and advances each on its own task.

The database holds every job's next due time, so a restart resumes everything; memory holds only
which jobs are being advanced right now, so one job is never advanced twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.store import Store

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
    ) -> None:
        self.store = store
        self.advance = advance
        self.concurrency = concurrency
        self.clock = clock
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._rewake: set[int] = set()
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
        """Something new for this job (a command, a reply, a button): look at it now."""
        if job_id in self._tasks:
            self._rewake.add(job_id)
        else:
            self.store.wake(job_id, self.clock())
        self._event.set()

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="poller")

    async def _run(self) -> None:
        while not self._stopping:
            timeout = IDLE_WAIT
            try:  # a database hiccup must not end the loop: every job depends on it
                self._claim_due()
                next_due = self.store.next_due_at()
                if next_due is not None and len(self._tasks) < self.concurrency:
                    timeout = min(IDLE_WAIT, max(0.0, next_due - self.clock()))
            except Exception:
                log.exception("poller: claiming due jobs failed; trying again shortly")
                timeout = 1.0
            self._event.clear()
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout)
            # Let a burst of wake-ups and finished jobs gather: one claim serves them all.
            await asyncio.sleep(BATCH_SECONDS)

    def _claim_due(self) -> None:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return
        now = self.clock()
        due = self.store.claim_due(now, free, set(self._tasks))
        for job_id, due_at in due:
            if self.lags is not None:
                self.lags.append(now - due_at)
            self._tasks[job_id] = asyncio.get_running_loop().create_task(self._advance(job_id))

    async def _advance(self, job_id: int) -> None:
        delay: float | None = 5.0
        try:
            delay = await self.advance(job_id)
        except asyncio.CancelledError:
            delay = 0.0
            raise
        except Exception:
            log.exception("job %s: unexpected error; will look again shortly", job_id)
            delay = UNEXPECTED_ERROR_DELAY
        finally:
            self.advanced += 1
            self._tasks.pop(job_id, None)
            if job_id in self._rewake:
                self._rewake.discard(job_id)
                delay = 0.0
            with contextlib.suppress(Exception):
                self.store.set_due(job_id, None if delay is None else self.clock() + delay)
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
