"""Store work off the event loop: the store stays synchronous, and the hot paths run it on
worker threads of its own, so a query (or a lock another instance holds) never freezes the loop.

Why threads and not an async store: every store method is a short, synchronous transaction
that other code calls directly, and must keep calling; psycopg's pool is thread-safe and
releases the GIL while it waits on the server, so the waits of several calls overlap.

- SQLite: ONE worker thread. The backend's single sqlite3 connection is guarded by its lock
  (`SqliteBackend.lock`), which every statement and every write transaction takes, so a call
  made on the loop thread and one made on the worker take turns, never interleave. When that
  lock is free, `off_loop` runs the call at once on the loop instead (under the lock): there is
  nothing to wait for, the statements take tens of µs, and the hop would cost more (under a
  burst of requests, far more: the worker waits for the GIL behind the loop). Such a call waits
  on the database no longer than any call made on the loop (bot/store/availability.py); and
  while the database is away none runs at once (`inline_when`): each may have to wait.
- PostgreSQL: as many workers as the pool has connections for them (the pool keeps two more
  for the sync calls made on the loop, so those never wait for a checkout behind the workers).

`off_loop(fn, *args)` runs a synchronous function there with the caller's context variables
(the lease fence travels with it). What such a function would start on the loop (a background
task, the poller's wake-up) goes through `on_loop`: called on the loop thread it happens at
once; called from inside `off_loop` it happens on the loop right after the function returns,
which is exactly when it would have run had the function been called on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# What the function running in `off_loop` left for the loop; None outside `off_loop`.
_deferred: contextvars.ContextVar[list[Callable[[], object]] | None] = contextvars.ContextVar(
    "store_off_loop_deferred", default=None
)


def on_loop(callback: Callable[[], object]) -> None:
    """Run `callback` on the event loop: now, or right after the `off_loop` call it is in."""
    deferred = _deferred.get()
    if deferred is None:
        callback()
    else:
        deferred.append(callback)


def in_off_loop() -> bool:
    """True inside a function that `off_loop` is running on a worker thread."""
    return _deferred.get() is not None


class OffLoop:
    """The store's worker threads (see the module's docstring for how many, and why).

    A queue and `call_soon_threadsafe` rather than `run_in_executor`: a hop through
    concurrent.futures and `asyncio.shield` cost more CPU (measured on PostgreSQL: 130–175 µs
    per call against 70–120 µs), and the poller makes several per poll. The queue has two
    ranks: calls with a deadline (`run_until`, a Slack request's) before the rest."""

    def __init__(
        self,
        workers: int,
        name: str,
        *,
        inline_lock: threading.RLock | None = None,
        inline_when: Callable[[], bool] = lambda: True,
    ) -> None:
        self.workers = workers
        self.name = name
        self._inline_lock = inline_lock
        self._inline_when = inline_when
        self.inline_calls = 0  # how many ran on the loop at once (the lock was free)
        # Calls a Slack request waits for go before background work (a job's card, the
        # poller's writes): under a burst, each request's write must come within its 2 s.
        self._queue: queue.PriorityQueue[tuple[int, int, _Item | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._cpu: dict[int, float] = {}  # worker thread → its CPU seconds (each writes its own)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        if self._free_inline():
            return self._inline(fn, *args, **kwargs)
        future, _ = self._enqueue(loop, _LATER, fn, *args, **kwargs)
        # A cancelled caller leaves the call to finish on its worker; what it started on the
        # loop still starts (`_settle`).
        return await future

    async def run_until(
        self, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, for a caller that must have its answer by `deadline` (time.monotonic): a call
        still queued then (the workers busy, each with a wait of its own) is dropped unrun and
        `QueuedTooLong` raised; a call already running is waited for (it keeps to its own
        budget on the database)."""
        loop = asyncio.get_running_loop()
        if self._free_inline():
            return self._inline(fn, *args, **kwargs)
        future, item = self._enqueue(loop, _FIRST, fn, *args, **kwargs)

        def give_up() -> None:  # a timer, not wait_for: no task per call
            if not future.done() and item.abandon():
                future.set_exception(QueuedTooLong())

        timer = loop.call_later(max(0.0, deadline - time.monotonic()), give_up)
        try:
            return await future
        finally:
            timer.cancel()

    def _free_inline(self) -> bool:
        """SQLite, its connection free (now taken, for `_inline`): nothing to wait for."""
        inline = self._inline_lock
        return inline is not None and self._inline_when() and inline.acquire(blocking=False)

    def _inline(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """The call at once on the loop: it takes as long as its statements (tens of µs), and
        a hop to the worker would cost more (50–90 µs of CPU, measured). The connection is
        held for the whole call: the worker waits, never interleaves."""
        assert self._inline_lock is not None
        try:
            self.inline_calls += 1
            return fn(*args, **kwargs)
        finally:
            self._inline_lock.release()

    def _enqueue(
        self, loop: asyncio.AbstractEventLoop, rank: int, fn: Callable[P, T], /, *args: P.args,
        **kwargs: P.kwargs,
    ) -> tuple[asyncio.Future[T], _Item]:  # fmt: skip
        if not self._threads:
            self._start()
        future: asyncio.Future[T] = loop.create_future()
        item = _Item(
            loop, future, contextvars.copy_context(), functools.partial(fn, *args, **kwargs)
        )
        self._queue.put((rank, next(self._order), item))
        return future, item

    def _start(self) -> None:
        with self._start_lock:  # threads only for a store that is used off the loop
            while len(self._threads) < self.workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the workers spent on calls (for benchmarks: the store's share)."""
        return sum(self._cpu.values())

    def _work(self) -> None:
        me = threading.get_ident()
        self._cpu[me] = 0.0
        while (item := self._queue.get()[2]) is not None:
            if not item.begin():  # its caller could wait no longer: never run
                continue
            began = time.thread_time()
            deferred: list[Callable[[], object]] = []

            def call(item: _Item = item, deferred: list[Callable[[], object]] = deferred) -> Any:
                _deferred.set(deferred)  # inside the copied context: the caller's stays None
                return item.call()

            try:
                result, error = item.context.run(call), None
            except BaseException as exc:  # handed to the caller, whatever it is
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                item.loop.call_soon_threadsafe(_settle, item.future, deferred, result, error)
            self._cpu[me] += time.thread_time() - began

    def close(self) -> None:
        """Let what is queued finish, then stop the workers."""
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), None))
        for thread in self._threads:
            thread.join()
        self._threads.clear()


_FIRST, _LATER, _STOP = 0, 1, 2  # a request's call, background work, a worker's end


class QueuedTooLong(Exception):
    """A call's deadline passed while it waited for a worker; it was never run."""


@dataclass
class _Item:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    context: contextvars.Context
    call: Callable[[], Any]
    # None while queued; True once a worker took it; False once its caller gave up on it.
    taken: bool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> bool:
        """The worker's: True when the call is to run (its caller still waits for it)."""
        with self._lock:
            if self.taken is None:
                self.taken = True
            return self.taken

    def abandon(self) -> bool:
        """The caller's: True when the call will never run (it had not started)."""
        with self._lock:
            if self.taken is None:
                self.taken = False
            return not self.taken


def _settle(
    future: asyncio.Future[Any],
    deferred: list[Callable[[], object]],
    result: Any,
    error: BaseException | None,
) -> None:
    """On the loop: first what the call started (even after a failure: what was started
    before it would have been started anyway), then the caller resumes."""
    for callback in deferred:
        callback()
    if future.done():  # cancelled by its caller
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
