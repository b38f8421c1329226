"""Everything that must survive a restart, in one SQLite file, with methods named by intent.

Write paths that change more than one row start with `BEGIN IMMEDIATE` (`_write`): in WAL
mode a plain `BEGIN` that reads and then writes fails with "database is locked" when another
connection wrote in between, and the busy timeout does not help there.
Messages for Slack are recorded here (the `posts` outbox) in the same transaction as the state
change that causes them, so a crash cannot lose them; the sender looks for a post in Slack
before repeating one whose answer it never saw.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("motion-bot")

# Runs that Motion is (or may be) working on: the job is busy while one of these exists.
ACTIVE_RUN_STATES = ("sending", "verifying", "running")
OPEN_POST_STATES = ("due", "sending")


@migrations()
def m001_initial(db: Database) -> None:
    db["jobs"].create(
        {
            "id": int,
            "team_id": str,
            "channel_id": str,
            "thread_ts": str,
            "requester": str,
            "response_url": str,
            "prompt": str,
            "motion_job_id": str,
            "state": str,  # new | open | stopped | abandoned
            "sandbox": int,
            "due_at": float,
            "errors": int,
            "status_calls": int,
            "motion_status": str,
            "motion_completed_at": str,
            "motion_url": str,
            "card_hash": str,
            "card_updated_at": float,
            "origin_job_id": int,
            "pending_posts": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"team_id", "channel_id", "requester", "state", "created_at"},
        defaults={"state": "new", "errors": 0, "status_calls": 0, "sandbox": 0},
    )
    db["jobs"].create_index(["due_at"])
    db["jobs"].create_index(["channel_id", "thread_ts"], unique=True)
    db["jobs"].create_index(["team_id", "requester", "created_at"])
    db["runs"].create(
        {
            "id": int,
            "job_id": int,
            "number": int,
            "kind": str,  # create | followup
            "request": str,  # JSON of MotionRequest
            "author": str,
            "reply_channel": str,
            "reply_ts": str,
            "state": str,  # waiting | sending | verifying | running | done | failed | unknown | rejected
            "sent_at": float,
            "baseline_completed_at": str,
            "baseline_url": str,
            "seen_new": int,
            "attempts": int,
            "last_poll_at": float,
            "motion_status": str,
            "started_at": float,
            "completed_at": str,
            "download_url": str,
            "expires_at": str,
            "sources": str,
            "error": str,
            "created_at": float,
            "finished_at": float,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
        not_null={"job_id", "number", "kind", "request", "state", "created_at"},
        defaults={"seen_new": 0},
    )
    db["runs"].create_index(["job_id", "number"], unique=True)
    db["runs"].create_index(["reply_channel", "reply_ts"], unique=True)
    db["posts"].create(
        {
            "id": int,
            "job_id": int,
            "run_id": int,
            "kind": str,
            "channel_id": str,
            "thread_ts": str,
            "broadcast": int,
            "payload": str,
            "state": str,  # due | sending | done | dropped
            "slack_ts": str,
            "attempts": int,
            "error": str,
            "created_at": float,
            "sent_at": float,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
        not_null={"job_id", "kind", "channel_id", "payload", "state", "created_at"},
        defaults={"attempts": 0, "broadcast": 0},
    )
    db["posts"].create_index(["job_id", "state"])
    db["events"].create({"key": str, "received_at": float}, pk="key")
    db["events"].create_index(["received_at"])
    db["run_history"].create(
        {"id": int, "duration": str, "seconds": float, "finished_at": float}, pk="id"
    )
    db["run_history"].create_index(["duration", "finished_at"])


@dataclass
class Job:
    id: int
    team_id: str
    channel_id: str
    thread_ts: str | None
    requester: str
    response_url: str | None
    prompt: str
    motion_job_id: str | None
    state: str
    sandbox: bool
    due_at: float | None
    errors: int
    status_calls: int
    motion_status: str | None
    motion_completed_at: str | None
    motion_url: str | None
    card_hash: str | None
    card_updated_at: float | None
    origin_job_id: int | None
    pending_posts: int | None
    created_at: float
    updated_at: float | None


@dataclass
class Run:
    id: int
    job_id: int
    number: int
    kind: str
    request: dict[str, Any]
    author: str | None
    reply_channel: str | None
    reply_ts: str | None
    state: str
    sent_at: float | None
    baseline_completed_at: str | None
    baseline_url: str | None
    seen_new: bool
    attempts: int | None
    last_poll_at: float | None
    motion_status: str | None
    started_at: float | None
    completed_at: str | None
    download_url: str | None
    expires_at: str | None
    sources: list[dict[str, Any]]
    error: str | None
    created_at: float
    finished_at: float | None


@dataclass
class Post:
    id: int
    job_id: int
    run_id: int | None
    kind: str
    channel_id: str
    thread_ts: str | None
    broadcast: bool
    payload: dict[str, Any]
    state: str
    slack_ts: str | None
    attempts: int
    created_at: float
    run_number: int | None = None


@dataclass(frozen=True)
class NewPost:
    """A message to record in the outbox; `thread` False means the channel's top level."""

    kind: str
    payload: dict[str, Any]
    broadcast: bool = False
    channel_id: str | None = None
    thread: bool = True

    @classmethod
    def of(cls, message: Any, **where: Any) -> NewPost:
        """The outbox entry for a built message, under the message's own kind."""
        return cls(message.kind, message.payload(), **where)


class Store:
    def __init__(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.db = Database(conn)
        self.path = path
        if path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA foreign_keys=ON")
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # a failed COMMIT must not leave the transaction open
            raise

    def ping(self) -> bool:
        return self.db.execute("SELECT 1").fetchone() == (1,)

    # ------------------------------------------------------------ jobs

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
    ) -> tuple[int, int]:
        """Record a command's job and its first run together: both exist or neither does."""
        with self._write() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (team_id, channel_id, requester, response_url, prompt, state,"
                " sandbox, due_at, errors, status_calls, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'new', ?, ?, 0, 0, ?, ?)",
                (
                    team_id,
                    channel_id,
                    requester,
                    response_url,
                    request["prompt"],
                    int(sandbox),
                    now,
                    now,
                    now,
                ),
            ).lastrowid
            run_id = self._insert_run(
                conn, job_id, 1, "create", request, requester, None, None, now
            )
        assert job_id is not None
        return job_id, run_id

    def _insert_run(
        self,
        conn: sqlite3.Connection,
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
            " state, seen_new, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', 0, ?)",
            (job_id, number, kind, json.dumps(request), author, reply_channel, reply_ts, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Rows as dicts; plain sqlite3 because this is on the poller's hot path."""
        cursor = self.db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def job(self, job_id: int) -> Job | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def job_for_thread(self, channel_id: str, thread_ts: str) -> Job | None:
        rows = list(
            self.db.query(
                "SELECT * FROM jobs WHERE channel_id = ? AND thread_ts = ?", [channel_id, thread_ts]
            )
        )
        return _job(rows[0]) if rows else None

    def recent_jobs(self, team_id: str, requester: str, limit: int = 10) -> list[Job]:
        return [
            _job(r)
            for r in self.db.query(
                "SELECT * FROM jobs WHERE team_id = ? AND requester = ? AND state != 'abandoned'"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                [team_id, requester, limit],
            )
        ]

    def claim_due(self, now: float, limit: int, exclude: set[int]) -> list[tuple[int, float]]:
        """Take up to `limit` due jobs, oldest due first, clearing their due time.

        A cleared due time is restored by the worker when it finishes, and by
        `resume_all` after a crash, so a claimed job is never forgotten.
        """
        rows = self.db.execute(
            "SELECT id, due_at FROM jobs WHERE due_at IS NOT NULL AND due_at <= ?"
            " ORDER BY due_at LIMIT ?",
            (now, limit + len(exclude)),
        ).fetchall()
        claimed = [(r[0], r[1]) for r in rows if r[0] not in exclude][:limit]
        if claimed:
            marks = ",".join("?" * len(claimed))
            self.db.execute(
                f"UPDATE jobs SET due_at = NULL WHERE id IN ({marks})", [c[0] for c in claimed]
            )
        return claimed

    def next_due_at(self) -> float | None:
        row = self.db.execute("SELECT MIN(due_at) FROM jobs WHERE due_at IS NOT NULL").fetchone()
        return row[0] if row else None

    def count_followed(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM jobs WHERE due_at IS NOT NULL").fetchone()[0]

    def set_due(self, job_id: int, due_at: float | None, *, errors: int | None = None) -> None:
        if errors is None:
            self.db.execute("UPDATE jobs SET due_at = ? WHERE id = ?", (due_at, job_id))
        else:
            self.db.execute(
                "UPDATE jobs SET due_at = ?, errors = ? WHERE id = ?", (due_at, errors, job_id)
            )

    def add_error(self, job_id: int) -> int:
        """One more consecutive failure for this job; returns how many in a row."""
        self.db.execute("UPDATE jobs SET errors = errors + 1 WHERE id = ?", (job_id,))
        return self.db.execute("SELECT errors FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]

    def set_errors(self, job_id: int, errors: int) -> None:
        self.db.execute("UPDATE jobs SET errors = ? WHERE id = ?", (errors, job_id))

    def add_send_attempt(self, run_id: int) -> int:
        """One more try at sending this run that did not reach Motion; returns the count."""
        self.db.execute(
            "UPDATE runs SET attempts = COALESCE(attempts, 0) + 1 WHERE id = ?", (run_id,)
        )
        return self.db.execute("SELECT attempts FROM runs WHERE id = ?", (run_id,)).fetchone()[0]

    def wake(self, job_id: int, now: float) -> None:
        """Make the job due now unless it is already due sooner."""
        self.db.execute(
            "UPDATE jobs SET due_at = ? WHERE id = ? AND (due_at IS NULL OR due_at > ?)",
            (now, job_id, now),
        )

    def record_card(
        self,
        job_id: int,
        thread_ts: str,
        channel_id: str,
        card_hash: str,
        now: float,
        origin_posts: list[NewPost] | None = None,
    ) -> None:
        """The thread exists. The command's response_url is forgotten: it is a capability
        that is no longer needed. A job started from an older one links back in the same step."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET thread_ts = ?, channel_id = ?, state = 'open', card_hash = ?,"
                " card_updated_at = ?, updated_at = ?, response_url = NULL WHERE id = ?",
                (thread_ts, channel_id, card_hash, now, now, job_id),
            )
            origin = conn.execute("SELECT origin_job_id FROM jobs WHERE id = ?", (job_id,))
            origin_id = origin.fetchone()[0]
            if origin_id and origin_posts:
                self._add_posts(conn, origin_id, None, origin_posts, now)

    def record_card_update(self, job_id: int, card_hash: str, now: float) -> None:
        self.db.execute(
            "UPDATE jobs SET card_hash = ?, card_updated_at = ? WHERE id = ?",
            (card_hash, now, job_id),
        )

    def abandon_job(self, job_id: int, now: float) -> None:
        """No thread could be made: nothing was sent to Motion, nothing more will be."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'abandoned', due_at = NULL, response_url = NULL,"
                " updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            conn.execute(
                "UPDATE runs SET state = 'rejected', finished_at = ? WHERE job_id = ?"
                " AND state = 'waiting'",
                (now, job_id),
            )

    def stop_job(
        self, job_id: int, run_id: int | None, error: str, posts: list[NewPost], now: float
    ) -> None:
        """Motion no longer answers for this job (401/404): stop following it, say so once."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'stopped', updated_at = ? WHERE id = ?", (now, job_id)
            )
            conn.execute(
                "UPDATE runs SET state = 'failed', error = ?, finished_at = ? WHERE job_id = ?"
                " AND state IN ('waiting', 'sending', 'verifying', 'running')",
                (error, now, job_id),
            )
            self._add_posts(conn, job_id, run_id, posts, now)

    def record_poll(
        self,
        job_id: int,
        run_id: int | None,
        *,
        motion_status: str,
        completed_at: str | None,
        url: str | None,
        now: float,
        posts: list[NewPost] | None = None,
        run_state: str | None = None,
    ) -> None:
        """What a status call said, with the messages it calls for, in one transaction.

        `run_id` when it was that run's own answer (not the previous run's, which Motion keeps
        showing for a while after a followup); `run_state` to move the run on (a followup whose
        answer was lost, found running)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET motion_status = ?, motion_completed_at = ?, motion_url = ?,"
                " status_calls = status_calls + 1, errors = 0, updated_at = ? WHERE id = ?",
                (motion_status, completed_at, url, now, job_id),
            )
            if run_id is not None:
                conn.execute(
                    "UPDATE runs SET seen_new = 1, motion_status = ?, last_poll_at = ?,"
                    " state = COALESCE(?, state) WHERE id = ?",
                    (motion_status, now, run_state, run_id),
                )
            self._add_posts(conn, job_id, run_id, posts or [], now)

    def count_status_call(self, job_id: int) -> None:
        self.db.execute("UPDATE jobs SET status_calls = status_calls + 1 WHERE id = ?", (job_id,))

    # ------------------------------------------------------------ runs

    def run(self, run_id: int) -> Run | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return _run(rows[0]) if rows else None

    def runs(self, job_id: int) -> list[Run]:
        rows = self._rows("SELECT * FROM runs WHERE job_id = ? ORDER BY number", (job_id,))
        return [_run(r) for r in rows]

    def has_active_run(self, job_id: int) -> bool:
        marks = ",".join("?" * len(ACTIVE_RUN_STATES))
        row = self.db.execute(
            f"SELECT 1 FROM runs WHERE job_id = ? AND state IN ({marks}) LIMIT 1",
            (job_id, *ACTIVE_RUN_STATES),
        ).fetchone()
        return row is not None

    def add_followup(
        self,
        job_id: int,
        request: dict[str, Any],
        author: str,
        reply_channel: str,
        reply_ts: str,
        now: float,
        event_keys: Iterable[str] = (),
    ) -> int | None:
        """Queue a followup; None when this reply was already taken (a redelivered event).

        The delivery's keys are claimed in the same transaction, so a crash leaves either both
        the claim and the followup or neither, and Slack's redelivery then finds the right state.
        """
        with self._write() as conn:
            exists = conn.execute(
                "SELECT 1 FROM runs WHERE reply_channel = ? AND reply_ts = ?",
                (reply_channel, reply_ts),
            ).fetchone()
            if exists or not self._claim(conn, event_keys, now):
                return None
            number = conn.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE job_id = ?", (job_id,)
            ).fetchone()[0]
            run_id = self._insert_run(
                conn, job_id, number, "followup", request, author, reply_channel, reply_ts, now
            )
        return run_id

    def record_reply_error(
        self, job_id: int, event_keys: Iterable[str], post: NewPost, now: float
    ) -> bool:
        """Record the answer to an unusable reply once per reply, with its delivery's keys."""
        with self._write() as conn:
            if not self._claim(conn, event_keys, now):
                return False
            self._add_posts(conn, job_id, None, [post], now)
        return True

    def _claim(self, conn: sqlite3.Connection, keys: Iterable[str], now: float) -> bool:
        """Claim every key or none; an already-claimed key rolls the claim back."""
        conn.execute("SAVEPOINT claim")
        for key in keys:
            cursor = conn.execute(
                "INSERT INTO events (key, received_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                (key, now),
            )
            if cursor.rowcount != 1:
                conn.execute("ROLLBACK TO claim")
                conn.execute("RELEASE claim")
                return False
        conn.execute("RELEASE claim")
        return True

    def restart_from(
        self, run_id: int, requester: str, team_id: str, sandbox: bool, now: float
    ) -> int | None:
        """A new job from a failed job's prompt plus the refused reply; once per button."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT runs.job_id, runs.request, jobs.channel_id FROM runs JOIN jobs ON"
                " jobs.id = runs.job_id WHERE runs.id = ? AND runs.state = 'rejected'",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            job_id, request_json, channel_id = row
            first = conn.execute(
                "SELECT request FROM runs WHERE job_id = ? ORDER BY number LIMIT 1", (job_id,)
            ).fetchone()
            request = json.loads(first[0])
            reply = json.loads(request_json)
            request["prompt"] = f"{request['prompt']}\n\n{reply['prompt']}"[:12_000]
            for key in ("style_url", "aspect", "duration"):
                request[key] = reply.get(key) or request.get(key)
            request["attachments"] = (request.get("attachments") or []) + (
                reply.get("attachments") or []
            )
            request["attachments"] = request["attachments"][:10]
            conn.execute("UPDATE runs SET state = 'restarted' WHERE id = ?", (run_id,))
            new_job = conn.execute(
                "INSERT INTO jobs (team_id, channel_id, requester, prompt, state, sandbox, due_at,"
                " errors, status_calls, origin_job_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'new', ?, ?, 0, 0, ?, ?, ?)",
                (
                    team_id,
                    channel_id,
                    requester,
                    request["prompt"],
                    int(sandbox),
                    now,
                    job_id,
                    now,
                    now,
                ),
            ).lastrowid
            assert new_job is not None
            self._insert_run(conn, new_job, 1, "create", request, requester, None, None, now)
        return new_job

    def copy_run(self, run_id: int, author: str, now: float) -> int | None:
        """A new waiting run with the same request, for "send it again"; only once per run."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT job_id, kind, request FROM runs WHERE id = ? AND state IN"
                " ('unknown', 'rejected')",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            job_id, kind, request = row
            conn.execute("UPDATE runs SET state = 'retried' WHERE id = ?", (run_id,))
            number = conn.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE job_id = ?", (job_id,)
            ).fetchone()[0]
            new_id = self._insert_run(
                conn, job_id, number, kind, json.loads(request), author, None, None, now
            )
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
    ) -> None:
        """Recorded before the call: a crash after this line means "answer unknown"."""
        self.db.execute(
            "UPDATE runs SET state = 'sending', sent_at = ?, baseline_completed_at = ?,"
            " baseline_url = ? WHERE id = ?",
            (now, baseline_completed_at, baseline_url, run_id),
        )

    def mark_running(self, run_id: int, job_id: int, motion_job_id: str, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET state = 'running', started_at = COALESCE(started_at, ?)"
                " WHERE id = ?",
                (now, run_id),
            )
            conn.execute(
                "UPDATE jobs SET motion_job_id = ?, updated_at = ? WHERE id = ?",
                (motion_job_id, now, job_id),
            )

    def mark_waiting(self, run_id: int) -> None:
        """Put a run back in the queue (a 409 race, or Motion unreachable before sending)."""
        self.db.execute("UPDATE runs SET state = 'waiting', sent_at = NULL WHERE id = ?", (run_id,))

    def mark_verifying(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET state = 'verifying' WHERE id = ?", (run_id,))

    def record_generation_time(self, bucket: str, seconds: float, now: float) -> None:
        self.db.execute(
            "INSERT INTO run_history (duration, seconds, finished_at) VALUES (?, ?, ?)",
            (bucket, seconds, now),
        )

    def generation_times(self, per_bucket: int = 500) -> list[tuple[str, float]]:
        """Recent generation times, oldest first, for the poll schedule to learn from."""
        rows = self.db.execute(
            "SELECT duration, seconds FROM (SELECT duration, seconds, id, ROW_NUMBER() OVER"
            " (PARTITION BY duration ORDER BY id DESC) AS rank FROM run_history)"
            " WHERE rank <= ? ORDER BY id",
            (per_bucket,),
        ).fetchall()
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
        with self._write() as conn:
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
            self._add_posts(conn, job_id, run_id, posts, now)
        return True

    def interrupted_runs(self) -> list[Run]:
        """Runs whose Motion call was in flight when the process died: outcome unknown."""
        return [_run(r) for r in self.db.query("SELECT * FROM runs WHERE state = 'sending'")]

    def resume_all(self, now: float, *, per_second: float = 200.0) -> int:
        """At start: every job with work left gets a due time; returns how many jobs.

        Jobs that were mid-step when the process died have no due time and become due now.
        Overdue jobs keep their order but are spread at `per_second`, so a restart after
        downtime does not fire thousands of status calls in the same instant.
        """
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET due_at = ? WHERE due_at IS NULL AND state IN ('new', 'open',"
                " 'stopped') AND (state = 'new' OR pending_posts = 1 OR EXISTS (SELECT 1 FROM runs WHERE runs.job_id = jobs.id"
                " AND runs.state IN ('waiting', 'verifying', 'running')) OR EXISTS (SELECT 1"
                " FROM posts WHERE posts.job_id = jobs.id AND posts.state IN ('due', 'sending')))",
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
            return conn.execute("SELECT COUNT(*) FROM jobs WHERE due_at IS NOT NULL").fetchone()[0]

    # ------------------------------------------------------------ outbox

    def add_posts(self, job_id: int, run_id: int | None, posts: list[NewPost], now: float) -> None:
        with self._write() as conn:
            self._add_posts(conn, job_id, run_id, posts, now)

    def _add_posts(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        run_id: int | None,
        posts: list[NewPost],
        now: float,
    ) -> None:
        if not posts:
            return
        job = conn.execute(
            "SELECT channel_id, thread_ts FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        for post in posts:
            channel = post.channel_id or job[0]
            thread_ts = job[1] if post.thread else None
            conn.execute(
                "INSERT INTO posts (job_id, run_id, kind, channel_id, thread_ts, broadcast,"
                " payload, state, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'due', 0, ?)",
                (
                    job_id,
                    run_id,
                    post.kind,
                    channel,
                    thread_ts,
                    int(post.broadcast),
                    json.dumps(post.payload),
                    now,
                ),
            )
            conn.execute("UPDATE jobs SET pending_posts = 1 WHERE id = ?", (job_id,))

    def open_posts(self, job_id: int) -> list[Post]:
        return [
            _post(r)
            for r in self.db.query(
                "SELECT posts.*, runs.number AS run_number FROM posts LEFT JOIN runs ON"
                " runs.id = posts.run_id WHERE posts.job_id = ? AND posts.state IN"
                " ('due', 'sending') ORDER BY posts.id",
                [job_id],
            )
        ]

    def clear_pending_posts(self, job_id: int) -> None:
        """Lower the job's "posts to send" flag, unless a post was added meanwhile."""
        self.db.execute(
            "UPDATE jobs SET pending_posts = 0 WHERE id = ? AND NOT EXISTS (SELECT 1 FROM posts"
            " WHERE job_id = ? AND state IN ('due', 'sending'))",
            (job_id, job_id),
        )

    def mark_post_sending(self, post_id: int, now: float) -> None:
        self.db.execute(
            "UPDATE posts SET state = 'sending', attempts = attempts + 1, sent_at = ? WHERE id = ?",
            (now, post_id),
        )

    def mark_post_done(self, post_id: int, slack_ts: str | None) -> None:
        self.db.execute(
            "UPDATE posts SET state = 'done', slack_ts = ? WHERE id = ?", (slack_ts, post_id)
        )

    def mark_post_failed(self, post_id: int, error: str, *, give_up: bool) -> None:
        self.db.execute(
            "UPDATE posts SET state = ?, error = ? WHERE id = ?",
            ("dropped" if give_up else "due", error, post_id),
        )

    # ------------------------------------------------------------ events

    def claim_event(self, key: str, now: float) -> bool:
        """True the first time a Slack delivery is seen; False for any redelivery."""
        cursor = self.db.execute(
            "INSERT INTO events (key, received_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            (key, now),
        )
        return cursor.rowcount == 1

    def forget_events_before(self, cutoff: float) -> None:
        self.db.execute("DELETE FROM events WHERE received_at < ?", (cutoff,))


def _job(row: dict[str, Any]) -> Job:
    row = dict(row)
    row["sandbox"] = bool(row["sandbox"])
    return Job(**row)


def _run(row: dict[str, Any]) -> Run:
    row = dict(row)
    row["request"] = json.loads(row["request"])
    row["sources"] = json.loads(row["sources"]) if row["sources"] else []
    row["seen_new"] = bool(row["seen_new"])
    return Run(**row)


def _post(row: dict[str, Any]) -> Post:
    row = dict(row)
    row["payload"] = json.loads(row["payload"])
    row["broadcast"] = bool(row["broadcast"])
    row.pop("sent_at", None)
    row.pop("error", None)
    return Post(**row)


def wall_now() -> float:
    return time.time()
