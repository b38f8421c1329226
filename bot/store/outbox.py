"""The outbox: every message for Slack, recorded in the same transaction as the change that
calls for it, so a crash cannot lose one; the sender looks for a post in Slack before
repeating one whose answer it never saw."""

from __future__ import annotations

import json

from bot.store.base import Database
from bot.store.dialect import Tx
from bot.store.models import NewPost, Post, post_from_row
from bot.store.steps import STEP_KIND, claim_step_end

UPLOAD_KIND = "upload"  # a run's MP4 shared into the thread: outside the in-order outbox


class OutboxRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def open_posts(self, job_id: int) -> list[Post]:
        return [
            post_from_row(r)
            for r in self.database.rows(
                "SELECT posts.*, runs.number AS run_number FROM posts LEFT JOIN runs ON"
                " runs.id = posts.run_id WHERE posts.job_id = ? AND posts.state IN"
                " ('due', 'sending') AND posts.kind != ? ORDER BY posts.id",
                (job_id, UPLOAD_KIND),
            )
        ]

    def waiting(self) -> tuple[int, float | None]:
        """Messages recorded for Slack and not sent yet (uploads aside: they run on their own),
        and when the oldest of them was recorded (None: none waits). For metrics."""
        row = self.database.backend.execute(
            "SELECT COUNT(*), MIN(created_at) FROM posts WHERE state IN ('due', 'sending')"
            " AND kind != ?",
            (UPLOAD_KIND,),
        ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    def clear_pending_posts(self, job_id: int) -> None:
        """Lower the job's "posts to send" flag, unless a post was added meanwhile. A video
        still to upload keeps it raised, so whichever instance looks at the job next (after
        a takeover too) knows to look for it, and a look at any other job costs no statement
        for uploads. Uploads do not hold the other posts up: they run on their own."""
        self.database.change(
            "UPDATE jobs SET pending_posts = 0 WHERE id = ? AND NOT EXISTS (SELECT 1 FROM posts"
            " WHERE job_id = ? AND state IN ('due', 'sending'))",
            (job_id, job_id),
        )

    def open_uploads(self, job_id: int) -> list[Post]:
        """The job's videos not yet in its thread (nor given up), oldest first."""
        return [
            post_from_row(r)
            for r in self.database.rows(
                "SELECT posts.*, runs.number AS run_number FROM posts LEFT JOIN runs ON"
                " runs.id = posts.run_id WHERE posts.job_id = ? AND posts.state IN"
                " ('due', 'sending') AND posts.kind = ? ORDER BY posts.id",
                (job_id, UPLOAD_KIND),
            )
        ]

    def first_open_post_id(self, job_id: int) -> int | None:
        """The oldest message of the job still to send (an upload waits for those before it)."""
        value = self.database.value(
            "SELECT MIN(id) FROM posts WHERE job_id = ? AND state IN ('due', 'sending')"
            " AND kind != ?",
            (job_id, UPLOAD_KIND),
        )
        return int(value) if value is not None else None

    def start_upload(self, post_id: int, now: float) -> None:
        """One more attempt at an upload, by this instance (`uploader`), from `now`."""
        self.database.change(
            "UPDATE posts SET state = 'sending', attempts = attempts + 1, sent_at = ?,"
            " uploader = ? WHERE id = ?",
            (now, self.database.owner, post_id),
        )

    def touch_upload(self, post_id: int, now: float) -> None:
        """The upload is still streaming here: others leave it alone."""
        self.database.change(
            "UPDATE posts SET sent_at = ? WHERE id = ? AND state = 'sending'", (now, post_id)
        )

    def upload_file_id(self, post_id: int) -> str | None:
        value = self.database.value("SELECT slack_ts FROM posts WHERE id = ?", (post_id,))
        return str(value) if value else None

    def record_upload_file(self, post_id: int, file_id: str) -> None:
        """Slack reserved a file for this upload: from here on, look for it before another."""
        self.database.change("UPDATE posts SET slack_ts = ? WHERE id = ?", (file_id, post_id))

    def mark_post_sending(self, post_id: int, now: float) -> None:
        self.database.change(
            "UPDATE posts SET state = 'sending', attempts = attempts + 1, sent_at = ? WHERE id = ?",
            (now, post_id),
        )

    def mark_post_done(self, post_id: int, slack_ts: str | None) -> None:
        self.database.change(
            "UPDATE posts SET state = 'done', slack_ts = ? WHERE id = ?", (slack_ts, post_id)
        )

    def mark_post_failed(self, post_id: int, error: str, *, give_up: bool) -> None:
        self.database.change(
            "UPDATE posts SET state = ?, error = ? WHERE id = ?",
            ("dropped" if give_up else "due", error, post_id),
        )


def insert_posts(
    conn: Tx,
    job_id: int,
    run_id: int | None,
    posts: list[NewPost],
    now: float,
) -> None:
    """Record posts for the job's outbox. A Workflow Builder step's completion (`STEP_KIND`)
    is recorded only when it ends the job's running execution (claimed here, so of two
    endings recorded for one job, say a result and a "Stop tracking", only the first goes
    out), with the execution's id added to what it says."""
    if not posts:
        return
    job = conn.execute("SELECT channel_id, thread_ts FROM jobs WHERE id = ?", (job_id,)).fetchone()
    for post in posts:
        payload = post.payload
        if post.kind == STEP_KIND:
            execution_id = claim_step_end(conn, job_id, now)
            if execution_id is None:
                continue
            payload = {**payload, "execution_id": execution_id}
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
                json.dumps(payload),
                now,
            ),
        )
        conn.execute("UPDATE jobs SET pending_posts = 1 WHERE id = ?", (job_id,))
