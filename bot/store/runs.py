"""Runs (one Motion create or followup each), their polls, and the generation times the poll
schedule learns from."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from bot.store.base import Database, LeaseLost, current_fence, held_polls
from bot.store.dialect import Tx
from bot.store.events import claim_events_for_job
from bot.store.models import ACTIVE_RUN_STATES, NewPost, QuietPoll, Run, run_from_row
from bot.store.outbox import insert_posts
from bot.store.usage import Spend, SpendRefused, charge, give_back, take


class RunRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def run(self, run_id: int) -> Run | None:
        rows = self.database.rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def runs(self, job_id: int) -> list[Run]:
        rows = self.database.rows("SELECT * FROM runs WHERE job_id = ? ORDER BY number", (job_id,))
        return [run_from_row(r) for r in rows]

    def has_active_run(self, job_id: int) -> bool:
        marks = ",".join("?" * len(ACTIVE_RUN_STATES))
        row = self.database.value(
            f"SELECT 1 FROM runs WHERE job_id = ? AND state IN ({marks}) LIMIT 1",
            (job_id, *(str(s) for s in ACTIVE_RUN_STATES)),
        )
        return row is not None

    def add_followup(
        self,
        job_id: int,
        request: dict[str, Any],
        author: str,
        reply_channel: str,
        reply_ts: str | None,
        now: float,
        event_keys: Iterable[str] = (),
        spend: Spend | None = None,
    ) -> int | None:
        """Queue a followup; None when this reply was already taken (a redelivered event).

        The delivery's keys are claimed in the same transaction, so a crash leaves either both
        the claim and the followup or neither, and Slack's redelivery then finds the right state.
        With `spend` the followup is counted now, while it waits: over a limit, the delivery is
        still claimed (a redelivery is not refused twice) and `SpendRefused` is raised.
        """
        refused: SpendRefused | None = None
        with self.database.write() as conn:
            exists = (
                reply_ts is not None
                and conn.execute(
                    "SELECT 1 FROM runs WHERE reply_channel = ? AND reply_ts = ?",
                    (reply_channel, reply_ts),
                ).fetchone()
            )
            if exists or not claim_events_for_job(conn, event_keys, now, job_id):
                return None
            if spend is not None and (refused := take(conn, spend)) is not None:
                run_id = None
            else:
                number = conn.execute(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE job_id = ?", (job_id,)
                ).fetchone()[0]
                run_id = insert_run(
                    conn, job_id, number, "followup", request, author, reply_channel, reply_ts,
                    now,
                )  # fmt: skip
                if spend is not None:
                    charge(conn, run_id, spend)
        if refused is not None:
            raise refused
        return run_id

    def record_reply_error(
        self, job_id: int, event_keys: Iterable[str], post: NewPost, now: float
    ) -> bool:
        """Record the answer to an unusable reply once per reply, with its delivery's keys."""
        with self.database.write() as conn:
            if not claim_events_for_job(conn, event_keys, now, job_id):
                return False
            insert_posts(conn, job_id, None, [post], now)
        return True

    def copy_run(
        self, run_id: int, author: str, now: float, spend: Spend | None = None
    ) -> int | None:
        """A new waiting run with the same request, for "send it again"; only once per run.
        With `spend`, counted as `add_followup` counts (raises `SpendRefused` over a limit)."""
        with self.database.write() as conn:
            row = conn.execute(
                "SELECT job_id, kind, request FROM runs WHERE id = ? AND state IN"
                " ('unknown', 'rejected')",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            job_id, kind, request = row
            if spend is not None and (refused := take(conn, spend)) is not None:
                raise refused
            conn.execute("UPDATE runs SET state = 'retried' WHERE id = ?", (run_id,))
            number = conn.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE job_id = ?", (job_id,)
            ).fetchone()[0]
            new_id = insert_run(
                conn, job_id, number, kind, json.loads(request), author, None, None, now
            )
            if spend is not None:
                charge(conn, new_id, spend)
            conn.execute(
                "UPDATE jobs SET state = CASE WHEN state = 'stopped' THEN 'open' ELSE state END"
                " WHERE id = ?",
                (job_id,),
            )
        return new_id

    def mark_sending(
        self,
        run_id: int,
        *,
        baseline_completed_at: str | None,
        baseline_url: str | None,
        now: float,
    ) -> bool:
        """Recorded before the call: a crash after this line means "answer unknown". False
        when the run is no longer waiting (its job was stopped meanwhile): send nothing."""
        return (
            self.database.change(
                "UPDATE runs SET state = 'sending', sent_at = ?, baseline_completed_at = ?,"
                " baseline_url = ? WHERE id = ? AND state = 'waiting'",
                (now, baseline_completed_at, baseline_url, run_id),
            )
            == 1
        )

    def mark_running(self, run_id: int, job_id: int, motion_job_id: str, now: float) -> bool:
        """Motion took the run. False when the job was stopped while the call was out: the
        Motion job is still remembered, the run stays stopped."""
        with self.database.write() as conn:
            changed = conn.execute(
                "UPDATE runs SET state = 'running' WHERE id = ? AND state = 'sending'", (run_id,)
            ).rowcount
            conn.execute("UPDATE jobs SET motion_job_id = ? WHERE id = ?", (motion_job_id, job_id))
        return changed == 1

    def mark_waiting(self, run_id: int) -> None:
        """Put a run back in the queue (a 409 race, or Motion unreachable before sending)."""
        self.database.change(
            "UPDATE runs SET state = 'waiting', sent_at = NULL WHERE id = ? AND state = 'sending'",
            (run_id,),
        )

    def mark_verifying(self, run_id: int) -> None:
        self.database.change(
            "UPDATE runs SET state = 'verifying' WHERE id = ? AND state = 'sending'", (run_id,)
        )

    def add_send_attempt(self, run_id: int) -> int:
        """One more try at sending this run that did not reach Motion; returns the count."""
        return int(
            self.database.change_returning(
                "UPDATE runs SET attempts = COALESCE(attempts, 0) + 1 WHERE id = ? RETURNING attempts",
                (run_id,),
            )
        )

    def record_poll(
        self,
        job_id: int,
        run_id: int | None,
        *,
        motion_status: str,
        now: float,
        posts: list[NewPost] | None = None,
        run_state: str | None = None,
    ) -> None:
        """What a status call said, with the messages it calls for, in one transaction.

        `run_id` when it was that run's own answer (not the previous run's, which Motion keeps
        showing for a while after a followup); `run_state` to move the run on (a followup whose
        answer was lost, found running). Any answer ends the job's run of failures."""
        with self.database.write() as conn:
            conn.execute("UPDATE jobs SET errors = 0 WHERE id = ?", (job_id,))
            if run_id is not None:
                followed = conn.execute(
                    "UPDATE runs SET seen_new = 1, motion_status = ?, last_poll_at = ?,"
                    " state = COALESCE(?, state) WHERE id = ? AND state IN"
                    " ('sending', 'verifying', 'running')",
                    (motion_status, now, run_state, run_id),
                ).rowcount
                if not followed:  # stopped while this look was out: nothing more to say
                    return
            insert_posts(conn, job_id, run_id, posts or [], now)

    def record_quiet_poll(
        self, job_id: int, run_id: int, *, motion_status: str, now: float
    ) -> None:
        """The common look: the run's own answer, nothing to tell Slack, no failures to end.
        One statement, the lease checked inside it, instead of a write transaction. (Under
        the poller the look holds it instead: `hold_quiet_poll`.)"""
        sql = (
            "UPDATE runs SET seen_new = 1, motion_status = ?, last_poll_at = ? WHERE id = ?"
            " AND job_id = ?"
        )
        params: list[Any] = [motion_status, now, run_id, job_id]
        fence = current_fence()
        if fence is not None:
            sql += " AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = ? AND jobs.lease_owner = ?)"
            params += [fence[0], fence[1]]
        if self.database.backend.execute(sql, params).rowcount != 1 and fence is not None:
            raise LeaseLost(f"job {job_id}: the lease is no longer {fence[1]}'s")

    def hold_quiet_poll(self, job_id: int, run_id: int, *, motion_status: str, now: float) -> bool:
        """Leave the quiet poll for the poller to write with the job's release, when a poller's
        look at this job is running (else False: write it now). The poller's hot path: this
        saves a round trip per poll."""
        held = held_polls()
        if held is None or not held.open or held.job_id != job_id:
            return False
        held.polls.append(QuietPoll(job_id, run_id, motion_status, now))
        return True

    def record_quiet_polls(self, polls: Sequence[QuietPoll]) -> int:
        """Many quiet polls in one statement, each written only while its job's lease is still
        this instance's (a takeover makes them stale) and never over a newer look at the run
        (a late batch must not turn "completed" back into "running"). Returns how many were
        written."""
        latest: dict[int, QuietPoll] = {}
        for poll in polls:  # one row per run: the newest answer
            if poll.run_id not in latest or latest[poll.run_id].at <= poll.at:
                latest[poll.run_id] = poll
        if not latest:
            return 0
        values = ", ".join(
            ["(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION))"]
            * len(latest)
        )
        params: list[Any] = []
        for poll in latest.values():
            params += [poll.job_id, poll.run_id, poll.motion_status, poll.at]
        return self.database.backend.execute(
            "UPDATE runs SET seen_new = 1, motion_status = polled.column3,"
            f" last_poll_at = polled.column4 FROM (VALUES {values}) AS polled, jobs"
            " WHERE runs.id = polled.column2 AND runs.job_id = polled.column1"
            " AND (runs.last_poll_at IS NULL OR runs.last_poll_at <= polled.column4)"
            " AND jobs.id = polled.column1 AND jobs.lease_owner = ?",
            (*params, self.database.owner),
        ).rowcount

    def write_held_polls(self) -> None:
        """Write the quiet polls this look holds now, each fenced by the lease (`LeaseLost` if
        another instance took the job over): before the look tells Slack anything, such as a
        card edit, exactly as if they had never been held."""
        held = held_polls()
        if held is None or not held.polls:
            return
        polls, held.polls = held.polls, []
        for poll in polls:
            self.record_quiet_poll(
                poll.job_id, poll.run_id, motion_status=poll.motion_status, now=poll.at
            )

    def record_generation_time(self, bucket: str, seconds: float, now: float) -> None:
        self.database.change(
            "INSERT INTO run_history (duration, seconds, finished_at) VALUES (?, ?, ?)",
            (bucket, seconds, now),
        )

    def generation_times(self, per_bucket: int = 500) -> list[tuple[str, float]]:
        """Recent generation times, oldest first, for the poll schedule to learn from."""
        rows = self.database.backend.execute(
            "SELECT duration, seconds FROM (SELECT duration, seconds, id, ROW_NUMBER() OVER"
            " (PARTITION BY duration ORDER BY id DESC) AS rank FROM run_history) AS recent"
            " WHERE rank <= ? ORDER BY id",
            (per_bucket,),
        ).rows
        return [(r[0], r[1]) for r in rows]

    def finish_run(
        self,
        run_id: int,
        job_id: int,
        *,
        state: str,
        posts: list[NewPost],
        now: float,
        error: str | None = None,
        download_url: str | None = None,
        completed_at: str | None = None,
        expires_at: str | None = None,
        sources: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Settle a run and record what to tell Slack, atomically; False if already settled."""
        with self.database.write() as conn:
            changed = conn.execute(
                "UPDATE runs SET state = ?, error = ?, download_url = ?, completed_at = ?,"
                " expires_at = ?, sources = ?, finished_at = ? WHERE id = ? AND state IN"
                " ('waiting', 'sending', 'verifying', 'running')",
                (
                    state,
                    error,
                    download_url,
                    completed_at,
                    expires_at,
                    json.dumps(sources) if sources is not None else None,
                    now,
                    run_id,
                ),
            ).rowcount
            if not changed:
                return False
            if state == "rejected":  # never started in Motion: its count is given back
                give_back(conn, [run_id])
            insert_posts(conn, job_id, run_id, posts, now)
        return True

    def generating_runs(self) -> list[Run]:
        """Runs Motion is still generating (as far as the last look knew): at start, the poll
        schedule counts each as lasting at least as long as it has been going."""
        rows = self.database.rows(
            "SELECT * FROM runs WHERE state = 'running' AND sent_at IS NOT NULL"
            " AND (motion_status IS NULL OR motion_status != 'completed')",
            (),
        )
        return [run_from_row(r) for r in rows]

    def interrupted_runs(self, now: float = math.inf) -> list[Run]:
        """Runs whose Motion call was in flight when a process died: outcome unknown. A run
        whose job another instance holds a live lease on is that instance's, not interrupted."""
        return [
            run_from_row(r)
            for r in self.database.rows(
                "SELECT runs.* FROM runs JOIN jobs ON jobs.id = runs.job_id WHERE"
                " runs.state = 'sending' AND (jobs.lease_owner IS NULL OR jobs.lease_until < ?)"
                " ORDER BY runs.id",
                (now,),
            )
        ]


def insert_run(
    conn: Tx,
    job_id: int,
    number: int,
    kind: str,
    request: dict[str, Any],
    author: str | None,
    reply_channel: str | None,
    reply_ts: str | None,
    now: float,
) -> int:
    cursor = conn.execute(
        "INSERT INTO runs (job_id, number, kind, request, author, reply_channel, reply_ts,"
        " state, seen_new, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', 0, ?) RETURNING id",
        (job_id, number, kind, json.dumps(request), author, reply_channel, reply_ts, now),
    )
    return int(cursor.fetchone()[0])
