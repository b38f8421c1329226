"""The schema, as an ordered list of named migrations (sqlite-utils >= 4 `Migrations`).

A migration that has run is never edited: a change is a new one, so every database moves
through the same steps.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("motion-bot")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("jobs").create(
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
    db.table("jobs").create_index(["due_at"])
    db.table("jobs").create_index(["channel_id", "thread_ts"], unique=True)
    db.table("jobs").create_index(["team_id", "requester", "created_at"])
    db.table("runs").create(
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
    db.table("runs").create_index(["job_id", "number"], unique=True)
    db.table("runs").create_index(["reply_channel", "reply_ts"], unique=True)
    db.table("posts").create(
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
    db.table("posts").create_index(["job_id", "state"])
    db.table("events").create({"key": str, "received_at": float}, pk="key")
    db.table("events").create_index(["received_at"])
    db.table("run_history").create(
        {"id": int, "duration": str, "seconds": float, "finished_at": float}, pk="id"
    )
    db.table("run_history").create_index(["duration", "finished_at"])


@migrations()
def m002_card_columns_and_dead_state(db: Database) -> None:
    """The card's phase, digest and "handed to Slack" moment get their own columns (the old
    `card_hash` held "posting" as a sentinel); columns nothing read are dropped."""
    jobs = db.table("jobs")
    jobs.add_column("card_phase", str)
    jobs.add_column("card_digest", str)
    jobs.add_column("card_sent_at", float)
    db.execute("UPDATE jobs SET card_sent_at = created_at WHERE card_hash = 'posting'")
    db.execute(
        "UPDATE jobs SET card_phase = substr(card_hash, 1, instr(card_hash, '|') - 1),"
        " card_digest = substr(card_hash, instr(card_hash, '|') + 1)"
        " WHERE card_hash LIKE '%|%'"
    )
    db.execute("UPDATE jobs SET pending_posts = 0 WHERE pending_posts IS NULL")
    jobs.transform(
        drop={
            "card_hash", "motion_status", "motion_completed_at", "motion_url", "status_calls",
            "updated_at",
        },
        defaults={"state": "new", "errors": 0, "sandbox": 0, "pending_posts": 0},
    )  # fmt: skip
    db.table("runs").transform(drop={"started_at"})


@migrations()
def m003_spend(db: Database) -> None:
    """Spend controls: run counters per person per UTC day and month and per workspace per
    month (`user_id` '' is the workspace), what each run was counted as (so a refused run gives
    its count back once), and the previews MOTION_CONFIRM shows before a run is recorded."""
    db.table("usage_counts").create(
        {"team_id": str, "user_id": str, "period": str, "runs": int},
        pk=("team_id", "user_id", "period"),
        not_null={"team_id", "user_id", "period", "runs"},
        defaults={"runs": 0},
    )
    db.table("run_spend").create(
        {
            "run_id": int,
            "team_id": str,
            "user_id": str,
            "day": str,
            "month": str,
            "given_back": int,
        },
        pk="run_id",
        foreign_keys=[("run_id", "runs", "id")],
        not_null={"team_id", "user_id", "day", "month", "given_back"},
        defaults={"given_back": 0},
    )
    db.table("previews").create(
        {
            "token": str,
            "kind": str,  # new_job | followup | retry | restart
            "team_id": str,
            "channel_id": str,
            "user_id": str,
            "job_id": int,
            "run_id": int,
            "reply_ts": str,
            "request": str,  # JSON of MotionRequest
            "state": str,  # pending | started | cancelled
            "created_at": float,
        },
        pk="token",
        not_null={"kind", "team_id", "channel_id", "user_id", "state", "created_at"},
        defaults={"state": "pending"},
    )
    db.table("previews").create_index(["created_at"])
