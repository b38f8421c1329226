"""Spend: runs counted when they are recorded, in the same transaction, and the previews that
MOTION_CONFIRM shows before a run is recorded at all.

A run is counted three times: for its person's UTC day, for its person's UTC month, and for
the workspace's UTC month (`user_id` '' is the workspace), by ONE statement (`count_run`: an
upsert of the three counters). A limit is kept by the database itself: each counter row
carries the limit it is counted under (`cap`, set by the same statement) and a CHECK keeps
`runs <= cap`, so a run over a limit makes the statement fail and its transaction roll back
whole. Two runs recorded at the same moment, by one instance or several, cannot both slip
under a limit: the second waits for the first's row lock (SQLite: the database's write lock)
and then counts on top of it. Nothing has to be read before the write, so on PostgreSQL a
command's whole transaction is one round trip (bot/store/jobs.py); why it was refused is read
only after a refusal (`limit_refusal`). What each run was counted as is kept in `run_spend`, so
a run Motion refused outright gives its count back exactly once.

Portable SQL only (`?` placeholders, `INSERT … ON CONFLICT`, savepoints): the same statements
serve SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.store.base import Database
from bot.store.dialect import ConstraintViolated, Cursor, Tx
from bot.store.events import claim_events
from bot.store.steps import StepPlace, StepTaken, claim_step

WORKSPACE = ""  # the user_id of the workspace-wide counters
USAGE_CAP = "usage_within_cap"  # the CHECK that keeps a counter within its limit (m015)


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


COUNT_RUN = (
    "INSERT INTO usage_counts (team_id, user_id, period, runs, cap)"
    " VALUES (?, ?, ?, 1, ?), (?, ?, ?, 1, ?), (?, ?, ?, 1, ?)"
    " ON CONFLICT (team_id, user_id, period)"
    " DO UPDATE SET runs = usage_counts.runs + 1, cap = excluded.cap"
)


def count_run(tx: Tx, spend: Spend) -> Cursor:
    """Count one run for `spend`, in the transaction that records it: the three counters in
    one statement, always in the same order (so transactions counting at once never wait on
    each other in a circle). Over a limit the statement breaks `USAGE_CAP`
    (`ConstraintViolated`, at once on SQLite, with the transaction's answer on PostgreSQL).
    A run from a preview claims it first: `PreviewGone` when it was started or cancelled
    (that answer is read at once: one more round trip, on Start only)."""
    if spend.preview_token is not None:
        claimed = tx.execute(
            "UPDATE previews SET state = 'started' WHERE token = ? AND state = 'pending'",
            (spend.preview_token,),
        ).rowcount
        if claimed != 1:
            raise PreviewGone()
    return tx.execute(COUNT_RUN, count_run_params(spend))


def count_run_params(spend: Spend) -> tuple[Any, ...]:
    """`COUNT_RUN`'s parameters: the person's day and month, the workspace's month, each with
    the limit it is counted under (None: no limit)."""
    return (
        spend.team_id, spend.user_id, spend.day, spend.per_user_per_day,
        spend.team_id, spend.user_id, spend.month, None,
        spend.team_id, WORKSPACE, spend.month, spend.per_month,
    )  # fmt: skip


def counts_now(spend: Spend) -> tuple[str, tuple[str, ...]]:
    """The statement (and its parameters) that reads the two limited counters of `spend`,
    as (user_id, runs) rows: for `limit_refusal`, after a refusal."""
    return (
        "SELECT user_id, runs FROM usage_counts WHERE team_id = ? AND period = ? AND user_id = ?"
        " UNION ALL SELECT user_id, runs FROM usage_counts WHERE team_id = ? AND period = ?"
        " AND user_id = ?",
        (spend.team_id, spend.day, spend.user_id, spend.team_id, spend.month, WORKSPACE),
    )


def limit_refusal(rows: Iterable[Sequence[Any]], spend: Spend) -> LimitReached:
    """Why a run was refused at a limit, from the counters as `counts_now` read them after
    the refusal: the person's day first, as people see it (should a count have fallen back
    meanwhile, a run given back, the limit nearest to being reached)."""
    counts = {str(row[0]): int(row[1]) for row in rows}
    today, month = counts.get(spend.user_id, 0), counts.get(WORKSPACE, 0)
    day_limit, month_limit = spend.per_user_per_day, spend.per_month
    day = LimitReached(LimitScope.USER_DAY, today, day_limit) if day_limit is not None else None
    workspace = (
        LimitReached(LimitScope.WORKSPACE_MONTH, month, month_limit)
        if month_limit is not None
        else None
    )
    if day is not None and (workspace is None or today >= day.limit):
        return day
    if workspace is not None and (day is None or month >= workspace.limit):
        return workspace
    assert day is not None and workspace is not None
    return day if day.limit - today <= workspace.limit - month else workspace


def take(tx: Tx, spend: Spend) -> SpendRefused | None:
    """`count_run` inside a transaction that goes on after a refusal (a followup's delivery
    stays claimed): within a savepoint, its answer read at once; over a limit or a preview
    gone, nothing of it is kept and the reason is returned."""
    tx.execute("SAVEPOINT spend")
    refused: SpendRefused | None = None
    try:
        _ = count_run(tx, spend).rowcount  # read now: a refusal shows here, not at COMMIT
    except PreviewGone as gone:
        refused = gone
    except ConstraintViolated as exc:
        if exc.where != USAGE_CAP:
            raise
        tx.execute("ROLLBACK TO SAVEPOINT spend")
        refused = limit_refusal(tx.execute(*counts_now(spend)).fetchall(), spend)
    if refused is not None and not isinstance(refused, LimitReached):
        tx.execute("ROLLBACK TO SAVEPOINT spend")
    tx.execute("RELEASE SAVEPOINT spend")
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
