"""`GET /healthz`: answered from a snapshot, never from the database on the request's time.

The snapshot (database reachable, jobs followed, jobs this instance holds) is refreshed every
`every` seconds on the store's workers, so a flood of health checks costs no query and no
event-loop time, and a database that hangs makes the snapshot old, which is reported as the
database being unreachable instead of a health check that hangs too.

The endpoint is unauthenticated (load balancers and platforms call it), so strangers learn only
whether the app is well: instance names, counts and modes are told only to a caller on this
host (a loopback address, not forwarded by a proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.store import Store

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.5
# A snapshot older than this means the database check itself is stuck: report it unreachable.
STALE_SECONDS = 10.0
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


@dataclass(frozen=True)
class Snapshot:
    database: bool
    jobs_polled: int | None
    jobs_held: int | None
    taken_at: float


def _take(store: Store, now: float) -> Snapshot:
    if not store.ping():
        return Snapshot(False, None, None, now)
    return Snapshot(True, store.count_followed(), store.held_jobs(), now)


class Health:
    """The snapshot, its refresher, and the answer to `/healthz`."""

    def __init__(
        self,
        store: Store,
        poller_alive: Callable[[], bool],
        details: dict[str, Any],
        *,
        every: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._poller_alive = poller_alive
        self._details = details  # mode, database kind, sandbox: for callers on this host
        self._every = every
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> Snapshot:
        try:
            snapshot = await self._store.off_loop(_take, self._store, self._clock())
        except Exception as exc:
            log.debug("health check: database unreachable (%s)", type(exc).__name__)
            snapshot = Snapshot(False, None, None, self._clock())
        self._snapshot = snapshot
        return snapshot

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.refresh()

    def body(self, *, full: bool) -> dict[str, Any]:
        snapshot = self._snapshot
        fresh = snapshot is not None and self._clock() - snapshot.taken_at < STALE_SECONDS
        database = bool(fresh and snapshot and snapshot.database)
        polling = self._poller_alive()
        body: dict[str, Any] = {"ok": database and polling, "poller": polling, "database": database}
        if full:
            body |= {
                "jobs_polled": snapshot.jobs_polled if database and snapshot else None,
                "instance": self._store.owner,
                "jobs_held": snapshot.jobs_held if database and snapshot else None,
                **self._details,
            }
        return body

    async def answer(self, request: web.Request) -> web.Response:
        body = self.body(full=from_this_host(request))
        return web.json_response(body, status=200 if body["ok"] else 503)


def from_this_host(request: web.Request) -> bool:
    """A caller on a loopback address that no proxy forwarded: the operator, not a stranger."""
    if any(name in request.headers for name in _FORWARDED):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False
