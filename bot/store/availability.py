"""The database away for a moment: how long one call may wait for it, and what the app knows
about an outage while it lasts.

A PostgreSQL server restarts or fails over, a SQLite file is held by another process's long
write: for seconds, statements fail or wait. Slack wants every request answered within 3 s, so
no call may wait on the database longer than whoever is waiting can afford:

- a Slack request has `REQUEST_SECONDS` from its arrival for all of its store calls together
  (`request_budget`); a write that cannot finish by then is rolled back whole and the request
  is answered "nothing was started, try again in a moment";
- a call made on an event loop's thread holds up every other request and job while it waits,
  so it waits `LOOP_SECONDS` at most; and while the database is known to be away it does not
  wait at all (`DatabaseUnavailable` at once), so calls cannot queue up behind one another;
- a call on the store's worker threads (`Store.off_loop`) outside a request waits
  `BACKGROUND_SECONDS` at most: the poller's look, the health probe, recovery.

What a wait means per backend (bot/store/dialect.py): SQLite's shared connection lock and its
`busy_timeout`; PostgreSQL's queue for the write lock, the pool's checkout timeout, and
`SET LOCAL lock_timeout / statement_timeout` sent with `BEGIN` (no extra round trip).

`Availability` follows one database's outages: the first failure logs one line, the first
success after it another (with how long it lasted and how many calls were refused), and in
between the poller, the outbox, uploads and stuck notices back off without logging. `/healthz`
reads it for the reason it gives. A SQLite write lock held elsewhere does not stop reads, so an
outage that began with a lock ends only with a write that succeeds (or the health probe's).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from bot.store.offloop import in_off_loop

log = logging.getLogger("bot.store")

REQUEST_SECONDS = 2.0  # of Slack's 3 s: the rest is for the answer itself
LOOP_SECONDS = 0.5  # one call on the event loop's thread: everything else waits meanwhile
BACKGROUND_SECONDS = 2.0  # one call on the store's workers, outside any request
RETRY_MIN_SECONDS = 0.5  # background work retries after this at first,
RETRY_MAX_SECONDS = 5.0  # and at most this long apart however long the outage lasts


class Reason(StrEnum):
    UNREACHABLE = "unreachable"  # no connection (a restart, a failover, a network cut)
    LOCKED = "locked"  # another connection or process holds a lock longer than the budget
    BUSY = "busy"  # this process's own connection or pool was busy longer than the budget
    TIMED_OUT = "timed out"  # a statement ran out of its time, or the request's was spent


class DatabaseUnavailable(Exception):
    """The database could not be reached, or a lock could not be had, within the caller's
    budget. Nothing of the failed call was written: its transaction was rolled back (or never
    began). `reason` is for people and `/healthz`; `detail` for the log."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"database {reason}: {detail}")
        self.reason = reason
        self.detail = detail


# When the current Slack request must be answered by (time.monotonic), if in one.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_deadline", default=None
)


@contextmanager
def request_budget(seconds: float = REQUEST_SECONDS) -> Iterator[float]:
    """Every store call made in this context (and in `off_loop` calls it makes) finishes, or
    fails with `DatabaseUnavailable`, within `seconds` from now. Nested: the earlier deadline
    holds. Yields the deadline. For a Slack request, and for any other work that must end in
    a known time (the recovery at start)."""
    deadline = time.monotonic() + seconds
    current = _deadline.get()
    if current is not None:
        deadline = min(deadline, current)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def begin_request_budget(seconds: float = REQUEST_SECONDS) -> None:
    """`request_budget` for the rest of the current task, unless one is already running: for
    code that sees a request's start but not its end (a Bolt middleware in Socket Mode, where
    every request is a task of its own)."""
    if _deadline.get() is None:
        _deadline.set(time.monotonic() + seconds)


def request_deadline() -> float | None:
    return _deadline.get()


def within_request(seconds: float, *, keep: float = 0.3) -> float:
    """How long a request may wait on something else (Slack, a card on its way) before its
    own writes: `seconds`, or less so that `keep` seconds of its budget are left for them."""
    deadline = _deadline.get()
    if deadline is None:
        return seconds
    return max(0.0, min(seconds, deadline - time.monotonic() - keep))


def leave_request_budget() -> None:
    """For work a request starts that goes on after its answer (a task of its own): Slack's
    3 s are not its to keep."""
    _deadline.set(None)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class Outage:
    """What `/healthz` and the log say about the current outage."""

    reason: Reason
    detail: str
    since: float  # time.monotonic()
    refused: int  # calls that failed or were refused since it began


class Availability:
    """One database's outages, and how long each call may wait (`patience`). Thread-safe:
    calls come from the loop and from every store worker."""

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self._needs_write = False  # began with a lock: only a write proves it over

    @property
    def outage(self) -> Outage | None:
        return self._outage

    @property
    def away(self) -> bool:
        return self._outage is not None

    @property
    def needs_write(self) -> bool:
        """The current outage began with a lock: a read proves nothing (SQLite reads go on
        under another process's write lock); only a write ends it."""
        return self._outage is not None and self._needs_write

    def patience(self) -> float:
        """How long the call about to be made may wait on the database, in seconds; raises
        DatabaseUnavailable instead when it must not try at all."""
        deadline = _deadline.get()
        worker = in_off_loop()
        loop = not worker and _on_event_loop()
        if loop and self._outage is not None:
            self.refuse()
            raise DatabaseUnavailable(self._outage.reason, "still away; not tried")
        wait = LOOP_SECONDS if loop else BACKGROUND_SECONDS
        if deadline is not None:
            left = deadline - self._clock()
            if left <= 0:
                raise DatabaseUnavailable(Reason.TIMED_OUT, "the request's time was spent")
            wait = min(wait, left) if loop else left
        return wait

    def refuse(self) -> None:
        with self._lock:
            if self._outage is not None:
                self._outage = _counted(self._outage)

    def failed(self, error: DatabaseUnavailable) -> DatabaseUnavailable:
        """A call failed for want of the database: the first failure of an outage is logged.
        Returns `error`, for `raise availability.failed(...) from exc`."""
        with self._lock:
            if self._outage is not None:
                self._outage = _counted(self._outage)
                return error
            self._outage = Outage(error.reason, error.detail, self._clock(), 1)
            self._needs_write = error.reason in (Reason.LOCKED, Reason.BUSY)
        log.warning(
            "database %s (%s): Slack requests are answered \"try again in a moment\" and "
            "background work waits until it is back",
            error.reason, error.detail,
        )  # fmt: skip
        return error

    def succeeded(self, *, wrote: bool) -> None:
        """A call went through: the end of an outage, unless it began with a lock and this
        was only a read."""
        if self._outage is None or (self._needs_write and not wrote):
            return  # the common case: no lock taken
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            log.warning(
                "database back after %.1f s (%s; %d call(s) failed or refused meanwhile)",
                self._clock() - outage.since, outage.reason, outage.refused,
            )  # fmt: skip

    def retry_delay(self) -> float:
        """How long background work waits before trying again: longer as the outage lasts
        (half its age so far, within bounds), with a little jitter so tasks spread out."""
        outage = self._outage
        age = self._clock() - outage.since if outage is not None else 0.0
        base = min(RETRY_MAX_SECONDS, max(RETRY_MIN_SECONDS, age / 2))
        return base * random.uniform(1.0, 1.25)


def _counted(outage: Outage) -> Outage:
    return Outage(outage.reason, outage.detail, outage.since, outage.refused + 1)
