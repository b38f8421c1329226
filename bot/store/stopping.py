"""Stuck runs and "Stop tracking": each decision claimed in one transaction with the message
that announces it, so a replayed click, two instances, or a crash say it once.

The stuck notice of a run is counted on the run (`stuck_notices`, `stuck_waited`,
`stuck_from`): a notice is recorded only while as many were answered "Keep waiting" as were
posted, and only by the look that moves the count on (`UPDATE … WHERE stuck_notices = n`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.store.base import Database
from bot.store.models import JobState, NewPost
from bot.store.outbox import insert_posts
from bot.store.usage import give_back

_FOLLOWED = "('waiting', 'sending', 'verifying', 'running')"


class StopKind(StrEnum):
    STOPPED = "stopped"  # this call stopped it
    ALREADY = "already"  # stopped before (a second click, another instance, a replay)
    NOTHING = "nothing"  # nothing left to follow (its last run already ended)
    GONE = "gone"  # no such job, or it never got a thread


@dataclass(frozen=True)
class Stop:
    """What `stop_tracking` did; `dropped` are the waiting followups' replies (channel, ts)."""

    kind: StopKind
    run_ids: tuple[int, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()


class StopRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record_stuck_notice(
        self, run_id: int, job_id: int, notices: int, post: NewPost, now: float
    ) -> bool:
        """Record notice number `notices + 1` for a run still followed, with its post; False
        when another look (here or on another instance) recorded it first, or the run ended."""
        with self.database.write() as conn:
            claimed = conn.execute(
                "UPDATE runs SET stuck_notices = stuck_notices + 1 WHERE id = ?"
                " AND stuck_notices = ? AND stuck_waited = ? AND state IN"
                " ('sending', 'verifying', 'running')",
                (run_id, notices, notices),
            ).rowcount
            if claimed != 1:
                return False
            insert_posts(conn, job_id, run_id, [post], now)
        return True

    def keep_waiting(self, run_id: int, notice: int, now: float) -> int | None:
        """ "Keep waiting" on notice number `notice`: the next period starts now. The job's id,
        or None when that notice was already answered or the run is no longer followed."""
        job_id = self.database.change_returning(
            "UPDATE runs SET stuck_waited = stuck_waited + 1, stuck_from = ? WHERE id = ?"
            " AND stuck_notices = ? AND stuck_waited = ? AND state IN"
            " ('sending', 'verifying', 'running') RETURNING job_id",
            (now, run_id, notice, notice - 1),
        )
        return int(job_id) if job_id is not None else None

    def stop_tracking(
        self, job_id: int, user_id: str, announce: Callable[[int], NewPost], now: float,
        also: Sequence[NewPost] = (),
    ) -> Stop:  # fmt: skip
        """Stop following the job: its active run and its waiting followups become `stopped`
        (the waiting ones give their count back: they were never sent), the job is stopped
        with who did it, and `announce(number of followups dropped)` is recorded for the
        thread (and `also`: a Workflow Builder step's failure), all in one transaction. The job is made due so a look edits its card and posts;
        an instance in the middle of a look at it finds every run settled (its writes are
        conditional on the run's state) and looks again at once (`woken`)."""
        with self.database.write() as conn:
            row = conn.execute(
                "SELECT state, thread_ts FROM jobs WHERE id = ?" + self.database.backend.for_update,
                (job_id,),
            ).fetchone()
            if row is None or row[1] is None:
                return Stop(StopKind.GONE)
            if row[0] == str(JobState.STOPPED):
                return Stop(StopKind.ALREADY)
            if row[0] != str(JobState.OPEN):
                return Stop(StopKind.GONE)
            runs = conn.execute(
                f"SELECT id, state, reply_channel, reply_ts FROM runs WHERE job_id = ?"
                f" AND state IN {_FOLLOWED} ORDER BY number",
                (job_id,),
            ).fetchall()
            if not runs:
                return Stop(StopKind.NOTHING)
            waiting = [r for r in runs if r[1] == "waiting"]
            give_back(conn, [r[0] for r in waiting])
            conn.execute(
                f"UPDATE runs SET state = 'stopped', finished_at = ?, error = CASE WHEN"
                f" state = 'waiting' THEN ? ELSE ? END WHERE job_id = ? AND state IN {_FOLLOWED}",
                (now, "dropped before it was sent", "tracking stopped", job_id),
            )
            conn.execute(
                "UPDATE jobs SET state = 'stopped', stopped_by = ?, stopped_at = ?, woken = 1,"
                " due_at = ? WHERE id = ?",
                (user_id, now, now, job_id),
            )
            insert_posts(conn, job_id, None, [announce(len(waiting)), *also], now)
        dropped = tuple((r[2], r[3]) for r in waiting if r[2] and r[3])
        return Stop(StopKind.STOPPED, tuple(r[0] for r in runs), dropped)
