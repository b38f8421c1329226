"""Spend: runs counted when they are recorded, in the same transaction, and the previews that
MOTION_CONFIRM shows before a run is recorded at all.

A run is counted three times: for its person's UTC day, for its person's UTC month, and for
the workspace's UTC month (`user_id` '' is the workspace). A limit is checked by the increment
itself (`UPDATE … WHERE runs < limit`), so two runs recorded at the same moment, by one
instance or several, cannot both slip under it: the second waits for the first's row lock
(SQLite: the database's write lock) and then sees its count. What each run was counted as is
kept in `run_spend`, so a run Motion refused outright gives its count back exactly once.

Portable SQL only (`?` placeholders, `INSERT … ON CONFLICT … DO NOTHING`, savepoints): the same
statements serve SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.store.base import Database
from bot.store.events import claim_events
from bot.store.steps import StepPlace, StepTaken, claim_step

WORKSPACE = ""  # the user_id of the workspace-wide counters


class LimitScope(StrEnum):
    USER_DAY = "user_day"  # MOTION_RUNS_PER_USER_PER_DAY
    WORKSPACE_MONTH = "workspace_month"  # MOTION_RUNS_PER_MONTH


class PreviewKind(StrEnum):
    NEW_JOB = "new_job"
    FOLLOWUP = "followup"
    RETRY = "retry"
    RESTART = "restart"


class PreviewState(StrEnum):
    PENDING = "pending"
    STARTED = "started"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Spend:
    """What to count a run as, and the limits it must stay within; `preview_token` when the
    run comes from a confirmed preview, which is claimed in the same transaction."""

    team_id: str
    user_id: str
    day: str  # UTC, YYYY-MM-DD
    month: str  # UTC, YYYY-MM
    per_user_per_day: int | None = None
    per_month: int | None = None
    preview_token: str | None = None


class SpendRefused(Exception):
    """The run was not recorded, and nothing was counted."""


class LimitReached(SpendRefused):
    def __init__(self, scope: LimitScope, used: int, limit: int) -> None:
        super().__init__(f"{scope}: {used} of {limit}")
        self.scope, self.used, self.limit = scope, used, limit


class PreviewGone(SpendRefused):
    """The preview was already started or cancelled (a second press, or a redelivery)."""


@dataclass(frozen=True)
class UsageCount:
    user_id: str
    today: int
    month: int


@dataclass(frozen=True)
class Preview:
    token: str = field(repr=False)  # the preview's capability: whoever holds it may start it
    kind: PreviewKind
    team_id: str
    channel_id: str
    user_id: str
    job_id: int | None
    run_id: int | None
    reply_ts: str | None
    request: dict[str, Any] | None
    state: PreviewState
    created_at: float


class UsageRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def usage_of(self, team_id: str, user_id: str, day: str, month: str) -> UsageCount:
        rows = self.database.rows(
            "SELECT period, runs FROM usage_counts WHERE team_id = ? AND user_id = ?"
            " AND period IN (?, ?)",
            (team_id, user_id, day, month),
        )
        runs = {r["period"]: int(r["runs"]) for r in rows}
        return UsageCount(user_id, runs.get(day, 0), runs.get(month, 0))

    def workspace_runs(self, team_id: str, month: str) -> int:
        return self.usage_of(team_id, WORKSPACE, month, month).month

    def everyone_usage(self, team_id: str, day: str, month: str) -> list[UsageCount]:
        """Every person with a run this month, most runs first."""
        rows = self.database.rows(
            "SELECT user_id, period, runs FROM usage_counts WHERE team_id = ? AND user_id != ?"
            " AND period IN (?, ?)",
            (team_id, WORKSPACE, day, month),
        )
        by_user: dict[str, dict[str, int]] = {}
        for r in rows:
            by_user.setdefault(r["user_id"], {})[r["period"]] = int(r["runs"])
        counts = [UsageCount(u, p.get(day, 0), p.get(month, 0)) for u, p in by_user.items()]
        counts = [c for c in counts if c.month or c.today]
        return sorted(counts, key=lambda c: (-c.month, -c.today, c.user_id))

    # ------------------------------------------------------------ previews (MOTION_CONFIRM)

    def save_preview(
        self, *, token: str, kind: PreviewKind, team_id: str, channel_id: str, user_id: str,
        now: float, job_id: int | None = None, run_id: int | None = None,
        reply_ts: str | None = None, request: dict[str, Any] | None = None,
        event_keys: Iterable[str] = (), step: StepPlace | None = None,
    ) -> bool:  # fmt: skip
        """Keep what a preview would start; False when its delivery was already taken (a reply's
        redelivered event, a Workflow Builder step's execution), claimed in the same
        transaction."""
        try:
            with self.database.write() as conn:
                if not claim_events(conn, event_keys, now, team_id):
                    return False
                if step is not None and not claim_step(conn, step, now, preview_token=token):
                    raise StepTaken(step.execution_id)
                conn.execute(
                    "INSERT INTO previews (token, kind, team_id, channel_id, user_id, job_id,"
                    " run_id, reply_ts, request, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        token, str(kind), team_id, channel_id, user_id, job_id, run_id, reply_ts,
                        json.dumps(request) if request is not None else None, now,
                    ),
                )  # fmt: skip
        except StepTaken:
            return False
        return True

    def preview(self, token: str) -> Preview | None:
        rows = self.database.rows("SELECT * FROM previews WHERE token = ?", (token,))
        if not rows:
            return None
        row = dict(rows[0])
        row["kind"] = PreviewKind(row["kind"])
        row["state"] = PreviewState(row["state"])
        row["request"] = json.loads(row["request"]) if row["request"] else None
        return Preview(**row)

    def cancel_preview(self, token: str) -> bool:
        """Cancel a preview not yet started; False if it was started or cancelled already."""
        changed = self.database.change(
            "UPDATE previews SET state = 'cancelled' WHERE token = ? AND state = 'pending'",
            (token,),
        )
        return changed == 1

    def forget_previews_before(self, cutoff: float) -> None:
        self.database.change("DELETE FROM previews WHERE created_at < ?", (cutoff,))


# ---------------------------------------------------------------- inside a run's transaction


def take(conn: Any, spend: Spend) -> SpendRefused | None:
    """Count one run for `spend` (and claim its preview), or change nothing and say why not.

    Called inside the transaction that records the run, before the run is inserted."""
    conn.execute("SAVEPOINT spend")
    refused: SpendRefused | None = None
    if spend.preview_token is not None:
        claimed = conn.execute(
            "UPDATE previews SET state = 'started' WHERE token = ? AND state = 'pending'",
            (spend.preview_token,),
        ).rowcount
        if claimed != 1:
            refused = PreviewGone()
    counters: list[tuple[str, str, int | None, LimitScope | None]] = [
        (spend.user_id, spend.day, spend.per_user_per_day, LimitScope.USER_DAY),
        (spend.user_id, spend.month, None, None),
        (WORKSPACE, spend.month, spend.per_month, LimitScope.WORKSPACE_MONTH),
    ]
    for user_id, period, limit, scope in counters if refused is None else []:
        key = (spend.team_id, user_id, period)
        # One statement per counter: created at 1, or one more unless at its limit (then no
        # row comes back and nothing changed).
        sql = (
            "INSERT INTO usage_counts (team_id, user_id, period, runs) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (team_id, user_id, period) DO UPDATE SET runs = usage_counts.runs + 1"
        )
        params: tuple[Any, ...] = key
        if limit is not None:
            sql += " WHERE usage_counts.runs < ?"
            params = (*key, limit)
        counted = None if limit is not None and limit < 1 else conn.execute(
            sql + " RETURNING runs", params
        ).fetchone()  # fmt: skip
        if counted is None:
            found = conn.execute(
                "SELECT runs FROM usage_counts WHERE team_id = ? AND user_id = ? AND period = ?",
                key,
            ).fetchone()
            assert scope is not None and limit is not None
            refused = LimitReached(scope, int(found[0]) if found else 0, limit)
            break
    if refused is not None:
        conn.execute("ROLLBACK TO SAVEPOINT spend")
    conn.execute("RELEASE SAVEPOINT spend")
    return refused


def charge(conn: Any, run_id: int, spend: Spend) -> None:
    """Remember what the run was counted as, for `give_back`."""
    conn.execute(
        "INSERT INTO run_spend (run_id, team_id, user_id, day, month, given_back)"
        " VALUES (?, ?, ?, ?, ?, 0)",
        (run_id, spend.team_id, spend.user_id, spend.day, spend.month),
    )


def give_back(conn: Any, run_ids: Iterable[int]) -> None:
    """A run that never started in Motion (refused outright, or never sent) is not counted;
    once per run, however often it is settled."""
    for run_id in run_ids:
        taken = conn.execute(
            "UPDATE run_spend SET given_back = 1 WHERE run_id = ? AND given_back = 0", (run_id,)
        ).rowcount
        if taken != 1:
            continue
        team_id, user_id, day, month = conn.execute(
            "SELECT team_id, user_id, day, month FROM run_spend WHERE run_id = ?", (run_id,)
        ).fetchone()
        for key in ((user_id, day), (user_id, month), (WORKSPACE, month)):
            conn.execute(
                "UPDATE usage_counts SET runs = runs - 1"
                " WHERE team_id = ? AND user_id = ? AND period = ? AND runs > 0",
                (team_id, *key),
            )
