"""Jobs: their Slack place, their card, and when each next needs a look (the poller's queue);
and a job read with its runs, as a look starts."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.base import Database, current_fence
from bot.store.dialect import ConstraintViolated, Cursor, Result, Tx
from bot.store.models import Job, JobState, NewPost, Run, job_from_row, run_from_row
from bot.store.outbox import insert_posts
from bot.store.runs import insert_run
from bot.store.steps import StepPlace, StepTaken, insert_step, start_previewed_step
from bot.store.usage import (
    COUNT_RUN,
    USAGE_CAP,
    Spend,
    charge,
    count_run,
    count_run_params,
    counts_now,
    give_back,
    limit_refusal,
    take,
)

LEASE_SECONDS = 30.0  # renewed every third of it; a dead instance's jobs are free after this


@dataclass(frozen=True)
class Claim:
    """What one claim leased: (job id, due at) for each job, oldest due first, and how many
    of them were taken over from another instance whose lease had run out."""

    jobs: list[tuple[int, float]]
    taken_over: int


class JobRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def create_job(
        self,
        *,
        team_id: str,
        channel_id: str,
        requester: str,
        response_url: str | None,
        request: dict[str, Any],
        sandbox: bool,
        now: float,
        spend: Spend | None = None,
        event_keys: Iterable[str] = (),
        origin_job_id: int | None = None,
        parent_ts: str | None = None,
        step: StepPlace | None = None,
        enterprise_id: str | None = None,
    ) -> tuple[int, int] | None:
        """Record a job and its first run together: both exist or neither does. With `spend`
        the run is counted in the same transaction, or nothing is recorded and the reason is
        raised (`SpendRefused`). `event_keys` (a button's "variation:<run>") are claimed in
        the same transaction: None when one was already claimed (a second press). A job with an
        `origin_job_id` (a variation) links to its thread from the origin's once it has one.
        With `parent_ts` (an @mention) the card is posted as a reply in that thread. With
        `step` (a Workflow Builder step) the execution is taken in the same transaction (from
        its preview, when `spend` comes from one): None when it was already taken.

        The write every command makes, so it is made as cheaply as the invariants allow:
        no global write lock (a delivery's keys and a step's execution are unique keys, the
        limits a CHECK on the counters under their row locks: see bot/store/usage.py), and
        nothing read before the end: on PostgreSQL one statement (`_new_job_in_one_statement`),
        on SQLite one transaction whose rows refer to the one before through `last_id`. (A
        preview's Start, which must read whether the preview is still pending, and a write
        fenced by a lease take the transaction on both.)"""
        one_statement = (
            self.database.backend.one_statement_inserts
            and current_fence() is None
            and (spend is None or spend.preview_token is None)
        )
        args = (
            team_id, channel_id, requester, response_url, request, sandbox, now, spend,
            tuple(event_keys), origin_job_id, parent_ts, step, enterprise_id,
        )  # fmt: skip
        try:
            if one_statement:
                return self._new_job_in_one_statement(*args)
            with self.database.write(exclusive=False) as tx:
                job, run = self._new_job_statements(tx, *args)
        except StepTaken:
            return None  # a redelivered step's preview, started already
        except ConstraintViolated as broken:
            if broken.kind == "unique" and broken.where in ("events", "step_executions"):
                return None  # a second press, a redelivered step: nothing was recorded
            if spend is None or broken.where != USAGE_CAP:
                raise
            counts = self.database.backend.execute(*counts_now(spend)).rows
            raise limit_refusal(counts, spend) from None
        return int(job.fetchone()[0]), int(run.fetchone()[0])

    def _new_job_in_one_statement(
        self, team_id: str, channel_id: str, requester: str, response_url: str | None,
        request: dict[str, Any], sandbox: bool, now: float, spend: Spend | None,
        event_keys: tuple[str, ...], origin_job_id: int | None, parent_ts: str | None,
        step: StepPlace | None, enterprise_id: str | None,
    ) -> tuple[int, int]:  # fmt: skip
        """`_new_job_statements` as one PostgreSQL statement (its data-modifying WITH parts
        all run, against one snapshot, and fail together): the same rows, one round trip."""
        parts: list[str] = []
        params: list[Any] = []
        if event_keys:
            marks = ", ".join(["(?, ?, ?)"] * len(event_keys))
            parts.append(
                f"claimed AS (INSERT INTO events (key, received_at, team_id) VALUES {marks})"
            )
            params += [value for key in event_keys for value in (key, now, team_id)]
        if spend is not None:
            parts.append(f"counted AS ({COUNT_RUN})")
            params += count_run_params(spend)
        parts.append(
            "job AS (INSERT INTO jobs (team_id, enterprise_id, channel_id, requester,"
            " response_url, prompt, state, sandbox, due_at, errors, pending_posts, origin_job_id,"
            " created_at, parent_ts) VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?, 0, 0, ?, ?, ?)"
            " RETURNING id)"
        )
        params += [
            team_id, enterprise_id or None, channel_id, requester, response_url,
            request["prompt"], int(sandbox), now, origin_job_id, now, parent_ts,
        ]  # fmt: skip
        if step is not None:  # its job's id given at once: no part sees another's rows
            parts.append(
                "taken AS (INSERT INTO step_executions (execution_id, team_id, channel_id,"
                " requester, preview_token, state, created_at, job_id)"
                " SELECT ?, ?, ?, ?, NULL, 'running', ?, id FROM job)"
            )
            params += [step.execution_id, step.team_id, step.channel_id, step.requester, now]
        parts.append(
            "run AS (INSERT INTO runs (job_id, number, kind, request, author, reply_channel,"
            " reply_ts, state, seen_new, created_at) SELECT id, 1, 'create', ?, ?, NULL, NULL,"
            " 'waiting', 0, ? FROM job RETURNING id, job_id)"
        )
        params += [json.dumps(request), requester, now]
        if spend is not None:
            parts.append(
                "spent AS (INSERT INTO run_spend (run_id, team_id, user_id, day, month,"
                " given_back) SELECT id, ?, ?, ?, ?, 0 FROM run)"
            )
            params += [spend.team_id, spend.user_id, spend.day, spend.month]
        sql = "WITH " + ", ".join(parts) + " SELECT job_id, id FROM run"
        row = self.database.backend.execute(sql, params).rows[0]
        return int(row[0]), int(row[1])

    def _new_job_statements(
        self, tx: Tx, team_id: str, channel_id: str, requester: str, response_url: str | None,
        request: dict[str, Any], sandbox: bool, now: float, spend: Spend | None,
        event_keys: tuple[str, ...], origin_job_id: int | None, parent_ts: str | None,
        step: StepPlace | None, enterprise_id: str | None,
    ) -> tuple[Cursor, Cursor]:  # fmt: skip
        """`create_job`'s statements, in an order where every one that needs an earlier
        row's id comes right after it (`last_id`: the latest insert's id). Returns the
        cursors whose RETURNING gives the job's id and the run's."""
        last_id = self.database.backend.last_id
        if event_keys:
            marks = ", ".join(["(?, ?, ?)"] * len(event_keys))
            tx.execute(
                f"INSERT INTO events (key, received_at, team_id) VALUES {marks}",
                [value for key in event_keys for value in (key, now, team_id)],
            )
        if spend is not None:
            count_run(tx, spend)
        if step is not None:
            if spend is not None and spend.preview_token:
                if not start_previewed_step(tx, step.execution_id):
                    raise StepTaken(step.execution_id)
            else:
                insert_step(tx, step, now)
        job = tx.execute(
            "INSERT INTO jobs (team_id, enterprise_id, channel_id, requester, response_url,"
            " prompt, state, sandbox, due_at, errors, pending_posts, origin_job_id, created_at,"
            " parent_ts) VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?, 0, 0, ?, ?, ?) RETURNING id",
            (
                team_id, enterprise_id or None, channel_id, requester, response_url,
                request["prompt"], int(sandbox), now, origin_job_id, now, parent_ts,
            ),
        )  # fmt: skip
        if step is not None:
            tx.execute(
                f"UPDATE step_executions SET job_id = {last_id('jobs')} WHERE execution_id = ?",
                (step.execution_id,),
            )
        run = tx.execute(
            "INSERT INTO runs (job_id, number, kind, request, author, reply_channel, reply_ts,"
            f" state, seen_new, created_at) VALUES ({last_id('jobs')}, 1, 'create', ?, ?, NULL, NULL,"
            " 'waiting', 0, ?) RETURNING id",
            (json.dumps(request), requester, now),
        )
        if spend is not None:
            tx.execute(
                "INSERT INTO run_spend (run_id, team_id, user_id, day, month, given_back)"
                f" VALUES ({last_id('runs')}, ?, ?, ?, ?, 0)",
                (spend.team_id, spend.user_id, spend.day, spend.month),
            )
        return job, run

    def restart_from(
        self, run_id: int, request: dict[str, Any], requester: str, team_id: str, sandbox: bool,
        now: float, spend: Spend | None = None,
    ) -> int | None:  # fmt: skip
        """A new job in place of a followup refused on a failed job; once per button, however
        often it is pressed (the refused run is marked in the same transaction). With `spend`,
        counted as `create_job` counts."""
        with self.database.write() as conn:
            row = conn.execute(
                "SELECT runs.job_id, jobs.channel_id, jobs.enterprise_id"
                " FROM runs JOIN jobs ON jobs.id = runs.job_id"
                " WHERE runs.id = ? AND runs.state = 'rejected'",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            if spend is not None and (refused := take(conn, spend)) is not None:
                raise refused
            conn.execute("UPDATE runs SET state = 'restarted' WHERE id = ?", (run_id,))
            job_id, new_run = _insert_job(
                conn, (team_id, row[2]), row[1], requester, None, request, sandbox, now, row[0]
            )
            if spend is not None:
                charge(conn, new_run, spend)
        return job_id

    def first_request(self, job_id: int) -> dict[str, Any] | None:
        """The request the job was started with."""
        value = self.database.value(
            "SELECT request FROM runs WHERE job_id = ? ORDER BY number LIMIT 1", (job_id,)
        )
        return json.loads(value) if value else None

    def job(self, job_id: int) -> Job | None:
        rows = self.database.rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    def job_for_thread(self, channel_id: str, thread_ts: str, *, team_id: str) -> Job | None:
        """The workspace's job whose thread this is. Two workspaces can see the same channel
        and ts (a Slack Connect channel): a thread is only ever its own workspace's job's."""
        rows = self.database.rows(
            "SELECT * FROM jobs WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
            (team_id, channel_id, thread_ts),
        )
        return job_from_row(rows[0]) if rows else None

    def card_in_flight(self, channel_id: str, since: float, *, team_id: str) -> bool:
        """Whether a job's card was handed to Slack in this channel since `since` and its answer
        (the ts that names the job's thread) is not recorded yet. People see the card as soon
        as Slack posts it, so a reply in a thread the store does not know may be in that one."""
        return (
            self.database.value(
                "SELECT 1 FROM jobs WHERE team_id = ? AND channel_id = ? AND state = 'new'"
                " AND thread_ts IS NULL AND card_sent_at >= ? LIMIT 1",
                (team_id, channel_id, since),
            )
            is not None
        )

    def recent_jobs(self, team_id: str, requester: str, limit: int = 10) -> list[Job]:
        rows = self.database.rows(
            "SELECT * FROM jobs WHERE team_id = ? AND requester = ? AND state != 'abandoned'"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (team_id, requester, limit),
        )
        return [job_from_row(r) for r in rows]

    def job_and_runs(self, job_id: int) -> tuple[Job | None, list[Run]]:
        """The job and its runs, as a look at it starts: one statement, so one round trip and
        one view of both."""
        found = _jobs_with_runs(
            self.database.backend.execute(
                "SELECT jobs.*, 1 AS runs_follow, runs.* FROM jobs LEFT JOIN runs"
                " ON runs.job_id = jobs.id WHERE jobs.id = ? ORDER BY runs.number",
                (job_id,),
            )
        )
        return found.get(job_id, (None, []))

    def jobs_and_runs(self, job_ids: Sequence[int]) -> list[tuple[Job, list[Run]]]:
        """Several jobs with their runs (in order), in one statement and one view of each, as
        the poller's claim hands them to the looks it starts. Jobs that do not exist are left
        out; the rest come in the order asked."""
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        found = _jobs_with_runs(
            self.database.backend.execute(
                "SELECT jobs.*, 1 AS runs_follow, runs.* FROM jobs LEFT JOIN runs ON"
                f" runs.job_id = jobs.id WHERE jobs.id IN ({marks}) ORDER BY jobs.id, runs.number",
                list(job_ids),
            )
        )
        return [found[job_id] for job_id in job_ids if job_id in found]

    # ------------------------------------------------------------ the poller's queue and leases

    def claim_due(
        self, now: float, limit: int, *, lease_seconds: float = LEASE_SECONDS
    ) -> list[tuple[int, float]]:
        """Lease up to `limit` due jobs to this instance, oldest due first: one statement.
        Returns (job id, due at) for each; `claim` also tells which were taken over."""
        return self.claim(now, limit, lease_seconds=lease_seconds).jobs

    def claim(self, now: float, limit: int, *, lease_seconds: float = LEASE_SECONDS) -> Claim:
        """`claim_due`, saying also how many of the jobs were taken over: leased by another
        instance that let the lease run out (it died, or hung). One statement still: the
        previous holders are read in the same statement that leases the jobs.

        A job stays due while leased; nobody else takes it until the lease has expired
        (PostgreSQL skips rows another instance is claiming; SQLite runs the statement under
        its write lock). `release` gives the job back with its next due time."""
        owner = self.database.owner
        rows = self.database.backend.execute(
            "WITH due AS MATERIALIZED (SELECT id, lease_owner FROM jobs WHERE due_at <= ?"
            " AND (lease_until IS NULL OR lease_until < ?) ORDER BY due_at LIMIT ?"
            + self.database.backend.skip_locked
            + ") UPDATE jobs SET lease_owner = ?, lease_until = ?, woken = 0"
            " WHERE id IN (SELECT id FROM due)"
            " RETURNING id, due_at, id IN (SELECT id FROM due WHERE lease_owner != ?)",
            (now, now, limit, owner, now + lease_seconds, owner),
        ).rows
        jobs = sorted(((r[0], r[1]) for r in rows), key=lambda r: (r[1], r[0]))
        return Claim(jobs, sum(1 for r in rows if r[2]))

    def claim_job(self, job_id: int, now: float, *, lease_seconds: float = LEASE_SECONDS) -> bool:
        """Lease one job, due or not, unless another instance holds a live lease on it."""
        return (
            self.database.change(
                "UPDATE jobs SET lease_owner = ?, lease_until = ?, woken = 0 WHERE id = ?"
                " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (self.database.owner, now + lease_seconds, job_id, self.database.owner, now),
            )
            == 1
        )

    def release(self, job_id: int, due_at: float | None, now: float) -> bool:
        """Give a leased job back with its next due time (now, if it was woken meanwhile).
        False when the lease was no longer this instance's (nothing is changed then)."""
        return (
            self.database.backend.execute(
                "UPDATE jobs SET due_at = CASE WHEN woken = 1 THEN ? ELSE ? END, woken = 0,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                (now, due_at, job_id, self.database.owner),
            ).rowcount
            == 1
        )

    def release_many(self, released: list[tuple[int, float | None]], now: float) -> int:
        """`release` for many jobs (job id, next due time) in one statement: the poller gives
        back the jobs its tasks finished together, one round trip for all of them. Returns
        how many were still this instance's."""
        if not released:
            return 0
        values = ", ".join(["(?, CAST(? AS DOUBLE PRECISION))"] * len(released))
        params: list[Any] = [now]
        for job_id, due_at in released:
            params += [job_id, due_at]
        return self.database.backend.execute(
            "UPDATE jobs SET due_at = CASE WHEN jobs.woken = 1 THEN ? ELSE released.column2 END,"
            " woken = 0, lease_owner = NULL, lease_until = NULL"
            f" FROM (VALUES {values}) AS released"
            " WHERE jobs.id = released.column1 AND jobs.lease_owner = ?",
            (*params, self.database.owner),
        ).rowcount

    def renew_leases(
        self,
        now: float,
        *,
        lease_seconds: float = LEASE_SECONDS,
        job_ids: Sequence[int] | None = None,
    ) -> int:
        """The heartbeat: every lease this instance holds (or only those of `job_ids`, the jobs
        it is working on: a lease nothing here works on then runs out and another takes the
        job) lasts `lease_seconds` from now."""
        sql, params = "UPDATE jobs SET lease_until = ? WHERE lease_owner = ?", [
            now + lease_seconds, self.database.owner,
        ]  # fmt: skip
        if job_ids is not None:
            if not job_ids:
                return 0
            sql += f" AND id IN ({', '.join('?' * len(job_ids))})"
            params += list(job_ids)
        return self.database.backend.execute(sql, params).rowcount

    def release_all(self) -> int:
        """At SIGTERM: every job this instance holds is free for another at once."""
        return self.database.backend.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
            (self.database.owner,),
        ).rowcount

    def release_predecessors(self) -> int:
        """At start: leases a previous boot of this same instance (same name) left behind
        when it was killed, and leases of instances named after this host and a process that
        no longer runs here (`host-pid`, the default name): no one else can be using them."""
        prefix = self.database.instance + ":"
        released: int = self.database.backend.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL"
            " WHERE substr(lease_owner, 1, ?) = ? AND lease_owner != ?",
            (len(prefix), prefix, self.database.owner),
        ).rowcount
        return released + self._release_dead_processes_here()

    def _release_dead_processes_here(self) -> int:
        host = socket.gethostname() + "-"
        rows = self.database.rows(
            "SELECT DISTINCT lease_owner FROM jobs WHERE substr(lease_owner, 1, ?) = ?",
            (len(host), host),
        )
        released = 0
        for row in rows:
            owner = str(row["lease_owner"])
            pid = _pid_of(owner[len(host) :])
            if pid is None or owner == self.database.owner or _process_runs(pid):
                continue
            released += self.database.backend.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                (owner,),
            ).rowcount
        return released

    def held_jobs(self) -> int:
        return int(
            self.database.value(
                "SELECT COUNT(*) FROM jobs WHERE lease_owner = ?", (self.database.owner,)
            )
        )

    def next_due_at(self, now: float) -> float | None:
        """When the next job nobody holds falls due (a held job's lease decides for it)."""
        value = self.database.value(
            "SELECT MIN(due_at) FROM jobs WHERE due_at IS NOT NULL"
            " AND (lease_until IS NULL OR lease_until < ?)",
            (now,),
        )
        return float(value) if value is not None else None

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (a state with none is absent): for metrics, read
        every few seconds by their refresher, never per request."""
        rows = self.database.rows("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {str(row["state"]): int(row["n"]) for row in rows}

    def count_followed(self) -> int:
        return int(self.database.value("SELECT COUNT(*) FROM jobs WHERE due_at IS NOT NULL"))

    def set_due(self, job_id: int, due_at: float | None) -> None:
        self.database.change("UPDATE jobs SET due_at = ? WHERE id = ?", (due_at, job_id))

    def wake(self, job_id: int, now: float) -> None:
        """Make the job due now unless it is already due sooner; if an instance is advancing
        it right now, that instance looks again as soon as it finishes (`woken`)."""
        self.database.change(
            "UPDATE jobs SET woken = 1, due_at = CASE WHEN due_at IS NULL OR due_at > ? THEN ?"
            " ELSE due_at END WHERE id = ?",
            (now, now, job_id),
        )

    def add_error(self, job_id: int) -> int:
        """One more consecutive failure for this job; returns how many in a row."""
        return int(
            self.database.change_returning(
                "UPDATE jobs SET errors = errors + 1 WHERE id = ? RETURNING errors", (job_id,)
            )
        )

    def clear_errors(self, job_id: int) -> None:
        self.database.change("UPDATE jobs SET errors = 0 WHERE id = ?", (job_id,))

    def resume_all(self, now: float, *, per_second: float = 200.0) -> int:
        """At start: every job with work left gets a due time; returns how many jobs.

        Jobs that were mid-step when the process died have no due time and become due now.
        Overdue jobs keep their order but are spread at `per_second`, so a restart after
        downtime does not fire thousands of status calls in the same instant.
        """
        with self.database.write() as conn:
            conn.execute(
                "UPDATE jobs SET due_at = ? WHERE due_at IS NULL AND ((state = 'abandoned' AND"
                " pending_posts = 1) OR (state IN ('new', 'open', 'stopped') AND (state = 'new'"
                " OR pending_posts = 1 OR EXISTS (SELECT 1 FROM runs WHERE runs.job_id = jobs.id"
                " AND runs.state IN ('waiting', 'verifying', 'running')) OR EXISTS (SELECT 1"
                " FROM posts WHERE posts.job_id = jobs.id AND posts.state IN ('due', 'sending')))))",
                (now,),
            )
            overdue = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at",
                    (now,),
                )
            ]
            if len(overdue) > per_second:
                conn.executemany(
                    "UPDATE jobs SET due_at = ? WHERE id = ?",
                    [(now + rank / per_second, job_id) for rank, job_id in enumerate(overdue)],
                )
            return int(
                conn.execute("SELECT COUNT(*) FROM jobs WHERE due_at IS NOT NULL").fetchone()[0]
            )

    # ------------------------------------------------------------ the thread and its card

    def record_card_sending(self, job_id: int, now: float) -> None:
        """The card is being handed to Slack: from here on, look for it before posting again."""
        self.database.change(
            "UPDATE jobs SET card_sent_at = COALESCE(card_sent_at, ?) WHERE id = ?", (now, job_id)
        )

    def record_card(
        self,
        job_id: int,
        thread_ts: str,
        channel_id: str,
        phase: str,
        digest: str,
        now: float,
        origin_posts: list[NewPost] | None = None,
        card_ts: str | None = None,
        public: bool = False,
    ) -> None:
        """The thread exists. The command's response_url is forgotten: it is a capability
        that is no longer needed. A job started from an older one links back in the same step.
        `card_ts`: the card, when it is a reply in `thread_ts` (a job started by a mention)."""
        with self.database.write() as conn:
            conn.execute(
                "UPDATE jobs SET thread_ts = ?, channel_id = ?, state = 'open', card_phase = ?,"
                " card_digest = ?, card_updated_at = ?, response_url = NULL, card_ts = ?,"
                " public = ? WHERE id = ?",
                (thread_ts, channel_id, phase, digest, now, card_ts, int(public), job_id),
            )
            origin = conn.execute("SELECT origin_job_id FROM jobs WHERE id = ?", (job_id,))
            origin_id = origin.fetchone()[0]
            if origin_id and origin_posts:
                insert_posts(conn, origin_id, None, origin_posts, now)

    def record_card_update(self, job_id: int, phase: str, digest: str, now: float) -> None:
        self.database.change(
            "UPDATE jobs SET card_phase = ?, card_digest = ?, card_updated_at = ? WHERE id = ?",
            (phase, digest, now, job_id),
        )

    def abandon_job(self, job_id: int, now: float, posts: list[NewPost] | None = None) -> None:
        """No thread could be made: nothing was sent to Motion, nothing more will be. `posts`
        (a Workflow Builder step's failure) keep the job due until the outbox has sent them."""
        with self.database.write() as conn:
            give_back(conn, _waiting_runs(conn, job_id))
            conn.execute(
                "UPDATE jobs SET state = 'abandoned', due_at = NULL, response_url = NULL"
                " WHERE id = ?",
                (job_id,),
            )
            conn.execute(
                "UPDATE runs SET state = 'rejected', finished_at = ? WHERE job_id = ?"
                " AND state = 'waiting'",
                (now, job_id),
            )
            insert_posts(conn, job_id, None, posts or [], now)
            conn.execute(
                "UPDATE jobs SET due_at = ? WHERE id = ? AND pending_posts = 1", (now, job_id)
            )

    def stop_job(
        self, job_id: int, run_id: int | None, error: str, posts: list[NewPost], now: float
    ) -> None:
        """Motion no longer answers for this job (401/404): stop following it, say so once
        (not at all when it was already stopped, by "Stop tracking" say)."""
        with self.database.write() as conn:
            state = conn.execute(
                "SELECT state FROM jobs WHERE id = ?" + self.database.backend.for_update, (job_id,)
            ).fetchone()
            if state is None or state[0] == str(JobState.STOPPED):
                return
            give_back(conn, _waiting_runs(conn, job_id))  # never sent: nothing spent
            conn.execute("UPDATE jobs SET state = ? WHERE id = ?", (str(JobState.STOPPED), job_id))
            conn.execute(
                "UPDATE runs SET state = 'failed', error = ?, finished_at = ? WHERE job_id = ?"
                " AND state IN ('waiting', 'sending', 'verifying', 'running')",
                (error, now, job_id),
            )
            insert_posts(conn, job_id, run_id, posts, now)


def _waiting_runs(conn: Tx, job_id: int) -> list[int]:
    rows = conn.execute("SELECT id FROM runs WHERE job_id = ? AND state = 'waiting'", (job_id,))
    return [r[0] for r in rows.fetchall()]


def _jobs_with_runs(result: Result) -> dict[int, tuple[Job, list[Run]]]:
    """Rows of `jobs.*, 1 AS runs_follow, runs.*` (runs in order; one row with NULL run
    columns for a job without runs) as each job with its runs."""
    split = result.names.index("runs_follow")
    job_names, run_names = result.names[:split], result.names[split + 1 :]
    id_at = job_names.index("id")
    found: dict[int, tuple[Job, list[Run]]] = {}
    for row in result.rows:
        job_id = row[id_at]
        if job_id not in found:
            found[job_id] = (job_from_row(dict(zip(job_names, row[:split], strict=True))), [])
        if row[split + 1] is not None:  # runs.id: NULL when the job has no run yet
            found[job_id][1].append(
                run_from_row(dict(zip(run_names, row[split + 1 :], strict=True)))
            )
    return found


def _insert_job(
    conn: Tx, workspace: tuple[str, str | None], channel_id: str, requester: str,
    response_url: str | None, request: dict[str, Any], sandbox: bool, now: float,
    origin_job_id: int | None, parent_ts: str | None = None,
) -> tuple[int, int]:  # fmt: skip
    """`workspace`: (team_id, enterprise_id), whose token every Slack call for the job uses."""
    team_id, enterprise_id = workspace
    job_id = conn.execute(
        "INSERT INTO jobs (team_id, enterprise_id, channel_id, requester, response_url, prompt,"
        " state, sandbox, due_at, errors, pending_posts, origin_job_id, created_at, parent_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?, 0, 0, ?, ?, ?) RETURNING id",
        (
            team_id, enterprise_id or None, channel_id, requester, response_url,
            request["prompt"], int(sandbox), now, origin_job_id, now, parent_ts,
        ),
    ).fetchone()[0]  # fmt: skip
    run_id = insert_run(conn, job_id, 1, "create", request, requester, None, None, now)
    return job_id, run_id


_HOST_PID_OWNER = re.compile(r"pid(\d{1,10}):[0-9a-f]+")


def _pid_of(rest: str) -> int | None:
    """The pid of a default-named owner (`<host>-pid<pid>:<boot>`, after the host), else None."""
    match = _HOST_PID_OWNER.fullmatch(rest)
    return int(match.group(1)) if match else None


def _process_runs(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a reused pid counts as running: the
    lease is then waited out, as for any other instance)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
