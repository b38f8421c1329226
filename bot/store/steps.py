"""Workflow Builder steps (`function_executed`): one row per execution id, so an execution
starts one job however often Slack delivers it, and ends once however many instances see the
end.

An execution is `previewed` (MOTION_CONFIRM: waiting for the requester's Start), `running` (its
job exists) or `ended`. Every change is made inside the transaction of the change that calls
for it: the job (`claim_step` in `create_job`), the preview (`save_preview`), the end of the
job's first run (`claim_step_end`, called by `insert_posts` for a step completion). An
execution that ends with no job (refused, cancelled) keeps the words to send until Slack has
them (`sent_at`), so a crash before the call is repaired at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.store.base import Database
from bot.store.dialect import Tx

STEP_KIND = "step_completion"  # the outbox row that completes (or fails) a workflow step


class StepState(StrEnum):
    PREVIEWED = "previewed"  # MOTION_CONFIRM: nothing recorded until the requester's Start
    RUNNING = "running"  # its job exists: the job's first run ends it
    ENDED = "ended"  # completed or failed (or that is recorded, to be sent)


class StepTaken(Exception):
    """The execution was already taken: its transaction is rolled back whole."""


@dataclass(frozen=True)
class StepPlace:
    """Who asked for an execution, and where: what its row is created with."""

    execution_id: str
    team_id: str
    channel_id: str
    requester: str


@dataclass(frozen=True)
class StepExecution:
    execution_id: str
    team_id: str
    channel_id: str
    requester: str
    job_id: int | None
    preview_token: str | None
    state: StepState
    error: str | None
    created_at: float
    ended_at: float | None
    sent_at: float | None


def claim_step(conn: Tx, place: StepPlace, now: float, *, preview_token: str | None = None) -> bool:
    """Take the execution for a job (`running`), or for a MOTION_CONFIRM preview
    (`previewed`, with its token). False when it was already taken (a redelivery): the caller
    then records nothing."""
    state = StepState.PREVIEWED if preview_token else StepState.RUNNING
    values = (
        place.execution_id, place.team_id, place.channel_id, place.requester, preview_token,
        str(state), now,
    )  # fmt: skip
    inserted = conn.execute(
        "INSERT INTO step_executions (execution_id, team_id, channel_id, requester,"
        " preview_token, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(execution_id) DO NOTHING",
        values,
    ).rowcount
    return bool(inserted == 1)


def insert_step(tx: Tx, place: StepPlace, now: float) -> None:
    """Take the execution for a job, in a transaction that reads nothing before COMMIT (a
    command's: bot/store/jobs.py): when it was already taken, the unique key refuses it and
    the whole transaction (`ConstraintViolated` on "step_executions")."""
    tx.execute(
        "INSERT INTO step_executions (execution_id, team_id, channel_id, requester,"
        " preview_token, state, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?)",
        (
            place.execution_id, place.team_id, place.channel_id, place.requester,
            str(StepState.RUNNING), now,
        ),
    )  # fmt: skip


def start_previewed_step(conn: Tx, execution_id: str) -> bool:
    """The requester pressed Start: the previewed execution is taken for the job, once."""
    return (
        conn.execute(
            "UPDATE step_executions SET state = 'running' WHERE execution_id = ?"
            " AND state = 'previewed'",
            (execution_id,),
        ).rowcount
        == 1
    )


def link_step(conn: Tx, execution_id: str, job_id: int) -> None:
    conn.execute(
        "UPDATE step_executions SET job_id = ? WHERE execution_id = ?", (job_id, execution_id)
    )


def claim_step_end(conn: Tx, job_id: int, now: float) -> str | None:
    """End the job's running execution: its id, once; None when the job has none running (no
    step, or it already ended)."""
    row = conn.execute(
        "UPDATE step_executions SET state = 'ended', ended_at = ? WHERE job_id = ?"
        " AND state = 'running' RETURNING execution_id",
        (now, job_id),
    ).fetchone()
    return str(row[0]) if row else None


class StepRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def step(self, execution_id: str) -> StepExecution | None:
        rows = self.database.rows(
            "SELECT execution_id, team_id, channel_id, requester, job_id, preview_token, state,"
            " error, created_at, ended_at, sent_at FROM step_executions WHERE execution_id = ?",
            (execution_id,),
        )
        if not rows:
            return None
        row = dict(rows[0])
        row["state"] = StepState(row["state"])
        return StepExecution(**row)

    def running_step(self, job_id: int) -> str | None:
        """The execution the job's first run ends, while it has not ended."""
        value = self.database.value(
            "SELECT execution_id FROM step_executions WHERE job_id = ? AND state = 'running'",
            (job_id,),
        )
        return str(value) if value is not None else None

    def step_of_preview(self, token: str) -> str | None:
        """The execution a MOTION_CONFIRM preview would start, while it waits for Start."""
        value = self.database.value(
            "SELECT execution_id FROM step_executions WHERE preview_token = ?"
            " AND state = 'previewed'",
            (token,),
        )
        return str(value) if value is not None else None

    def refuse_step(self, place: StepPlace, error: str, now: float) -> bool:
        """An execution refused before any job or preview: recorded as ended with `error` to
        send. False when the execution was already taken (a redelivery): nothing to send."""
        values = (
            place.execution_id, place.team_id, place.channel_id, place.requester, error, now,
            now,
        )  # fmt: skip
        inserted = self.database.change(
            "INSERT INTO step_executions (execution_id, team_id, channel_id, requester,"
            " state, error, created_at, ended_at) VALUES (?, ?, ?, ?, 'ended', ?, ?, ?)"
            " ON CONFLICT(execution_id) DO NOTHING",
            values,
        )
        return inserted == 1

    def end_previewed_step(self, execution_id: str, error: str, now: float) -> bool:
        """A previewed execution that will not start (cancelled, refused at Start, expired,
        the preview could not be shown): ended with `error` to send, once."""
        return (
            self.database.change(
                "UPDATE step_executions SET state = 'ended', error = ?, ended_at = ?"
                " WHERE execution_id = ? AND state = 'previewed'",
                (error, now, execution_id),
            )
            == 1
        )

    def mark_step_sent(self, execution_id: str, now: float) -> None:
        self.database.change(
            "UPDATE step_executions SET sent_at = ? WHERE execution_id = ?", (now, execution_id)
        )

    def unsent_step_errors(self, since: float) -> list[tuple[str, str, str]]:
        """(execution id, words, team id) of executions that ended with no job since `since`
        whose words Slack has not confirmed: a crash came between the record and the call."""
        rows = self.database.rows(
            "SELECT execution_id, error, team_id FROM step_executions WHERE state = 'ended'"
            " AND job_id IS NULL AND sent_at IS NULL AND error IS NOT NULL AND ended_at >= ?",
            (since,),
        )
        return [(str(r["execution_id"]), str(r["error"]), str(r["team_id"])) for r in rows]
