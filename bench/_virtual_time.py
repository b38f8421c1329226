"""An asyncio event loop whose clock jumps over idle waits: real code, real sockets, virtual time.

The loop is asyncio's own selector loop with two changes. Its `time()` is real monotonic time
plus a skipped offset, so everything scheduled on it (asyncio.sleep, wait_for, httpx and aiohttp
timeouts, the poller's waits) runs on the virtual clock. And when the loop is about to block
until its next timer, the selector first looks for socket events for a moment of real time
(`GRACE`); only when none arrived and no executor thread is working (DNS look-ups run in one)
does it add the rest of the wait to the offset instead of sleeping it. Work in progress is
therefore never skipped: a request on a loopback socket is in the peer's buffer when `send`
returns, so the server side of a call is ready before the loop could jump. CPU time spent by
the code under test still counts, as it would in production.

`wall()` is the same clock in Unix seconds, for code that takes a `time.time`-like clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import time
from collections.abc import Callable
from typing import Any

GRACE = 0.0005  # real seconds the selector waits for socket events before jumping


class VirtualClock:
    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self.skipped = 0.0
        self.jumps = 0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def wall(self) -> float:
        return self._wall0 + (self.monotonic() - self._mono0)

    def skip(self, seconds: float) -> None:
        self.skipped += seconds
        self.jumps += 1


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self, clock: VirtualClock, busy: Callable[[], bool]) -> None:
        super().__init__()
        self.clock = clock
        self.busy = busy

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        target = self.clock.monotonic() + timeout
        events = super().select(min(timeout, GRACE))
        if events or self.busy():
            return events
        remaining = target - self.clock.monotonic()
        if remaining > 0:
            self.clock.skip(remaining)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._executor_jobs = 0
        super().__init__(_JumpingSelector(clock, lambda: self._executor_jobs > 0))

    def time(self) -> float:
        return self.clock.monotonic()

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1

        def done(_: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
            self._executor_jobs -= 1

        future.add_done_callback(done)
        return future


def run(coro_factory: Callable[[VirtualClock], Any]) -> Any:
    """Run `coro_factory(clock)` to completion on a fresh virtual-time loop."""
    clock = VirtualClock()
    loop = VirtualTimeLoop(clock)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro_factory(clock))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
