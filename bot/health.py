"""`GET /healthz`: answered from a snapshot, never from the database on the request's time.

The snapshot (database reachable, jobs followed, jobs this instance holds) is refreshed every
`every` seconds on the store's workers, so a flood of health checks costs no query and no
event-loop time, and a database that hangs makes the snapshot old, which is reported as the
database being unreachable instead of a health check that hangs too.

While the database is away (bot/store/availability.py) the answer is 503 with the reason
("database unreachable", "database locked", ...), and 200 again from the first refresh that
finds it back: the refresh is the store's probe, which during an outage also has PostgreSQL's
pool drop the connections the outage cut, and after a SQLite lock tries a write.

The endpoint is unauthenticated (load balancers and platforms call it), so strangers learn only
whether the app is well and why not in a few words: instance names, counts, modes and the
database's own error are told only to a caller on this host (a loopback address, not forwarded
by a proxy).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.refresher import Refresher
from bot.store import DatabaseUnavailable, Store, request_budget

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.5
PROBE_SECONDS = 1.0  # the most one refresh waits on the database
# A snapshot older than this means the database check itself is stuck: report it unreachable.
STALE_SECONDS = 10.0
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


@dataclass(frozen=True)
class Snapshot:
    database: bool
    jobs_polled: int | None
    jobs_held: int | None
    taken_at: float
    reason: str | None = None  # why the database is not well, in a few words
    detail: str | None = None  # the database's own words (for callers on this host)


def _take(store: Store, now: float) -> Snapshot:
    store.probe()
    return Snapshot(True, store.count_followed(), store.held_jobs(), now)


def _away(store: Store, away: DatabaseUnavailable, now: float) -> Snapshot:
    """The database not well: said as the outage under way says it (a probe that could not
    even start in time says only that it timed out)."""
    outage = store.availability.outage
    reason = outage.reason if outage is not None else away.reason
    return Snapshot(False, None, None, now, f"database {reason}", away.detail)


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
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._refresher = Refresher(self.refresh, every, "health")

    async def refresh(self) -> Snapshot:
        try:
            with request_budget(PROBE_SECONDS):  # a database that makes it wait is not well
                snapshot = await self._store.off_loop(_take, self._store, self._clock())
        except DatabaseUnavailable as away:
            snapshot = _away(self._store, away, self._clock())
        except Exception as exc:
            log.debug("health check: database unreachable (%s)", type(exc).__name__)
            snapshot = Snapshot(
                False, None, None, self._clock(), "database unreachable", type(exc).__name__
            )
        self._snapshot = snapshot
        return snapshot

    def start(self) -> None:
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    def body(self, *, full: bool) -> dict[str, Any]:
        snapshot = self._snapshot
        fresh = snapshot is not None and self._clock() - snapshot.taken_at < STALE_SECONDS
        database = bool(fresh and snapshot and snapshot.database)
        polling = self._poller_alive()
        body: dict[str, Any] = {"ok": database and polling, "poller": polling, "database": database}
        if not body["ok"]:
            body["reason"] = self._reason(snapshot, fresh, database, polling)
        if full:
            outage = self._store.availability.outage
            body |= {
                "jobs_polled": snapshot.jobs_polled if database and snapshot else None,
                "instance": self._store.owner,
                "jobs_held": snapshot.jobs_held if database and snapshot else None,
                **self._details,
            }
            if not database:
                body["database_error"] = (snapshot.detail if snapshot and fresh else None) or (
                    outage.detail if outage else None
                )
            if outage is not None:
                body["database_away_seconds"] = round(time.monotonic() - outage.since, 1)
        return body

    @staticmethod
    def _reason(snapshot: Snapshot | None, fresh: bool, database: bool, polling: bool) -> str:
        """Why the app is not well, in a few words that tell a stranger nothing more."""
        if not database:
            if snapshot is None or not fresh:
                return "database check stuck"
            return snapshot.reason or "database unreachable"
        return "poller stopped" if not polling else "unknown"

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
