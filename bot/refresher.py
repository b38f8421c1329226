"""A snapshot refreshed in the background, for readers that come often and must not wait.

`/healthz` and `/metrics` are each answered from a snapshot of what the database says (bot/health.py,
bot/metrics.py); this calls their `refresh` every few seconds on the event loop until stopped, so
no health check or scrape costs a query of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Refresher:
    def __init__(self, refresh: Callable[[], Awaitable[object]], every: float, name: str) -> None:
        self._refresh = refresh
        self._every = every
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self._refresh()
