"""What the store holds, as types: the states of jobs, runs and posts, and one row of each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class JobState(StrEnum):
    NEW = "new"  # recorded; its card is not posted yet
    OPEN = "open"  # the card is posted: the thread is the job's home
    # Not followed any more: Motion no longer answers for it (401/404), or someone chose
    # "Stop tracking" (`stopped_by`); replies are answered, never sent
    STOPPED = "stopped"
    ABANDONED = "abandoned"  # no thread could be made; nothing was or will be sent


class RunKind(StrEnum):
    CREATE = "create"
    FOLLOWUP = "followup"


class RunState(StrEnum):
    WAITING = "waiting"  # queued behind the job's active run, or not sent yet
    SENDING = "sending"  # the Motion write is in flight: after a crash, outcome unknown
    VERIFYING = "verifying"  # a followup whose answer was lost: looking for it in the status
    RUNNING = "running"  # Motion took it
    DONE = "done"  # result recorded (and announced through the outbox)
    FAILED = "failed"
    UNKNOWN = "unknown"  # a create whose answer never came: the thread offers a resend
    REJECTED = "rejected"  # never started (Motion refused it, or there was nothing to refine)
    RETRIED = "retried"  # superseded by the run "Send it again" made
    RESTARTED = "restarted"  # a refused followup that became a new job
    STOPPED = "stopped"  # "Stop tracking": no longer followed (Motion may still finish it)


ACTIVE_RUN_STATES = (RunState.SENDING, RunState.VERIFYING, RunState.RUNNING)
# Not shown on the card or counted: replaced by another run.
HIDDEN_RUN_STATES = (RunState.RETRIED,)


class PostState(StrEnum):
    DUE = "due"
    SENDING = "sending"  # handed to Slack, answer not recorded: look before posting again
    DONE = "done"
    DROPPED = "dropped"  # given up (a permanent Slack error, or too many attempts)


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
    state: JobState
    sandbox: bool
    due_at: float | None
    errors: int
    card_phase: str | None  # what the card last showed (the edit of a new phase is not rationed)
    card_digest: str | None  # a digest of the card as last posted or edited
    card_sent_at: float | None  # when the card was first handed to Slack
    card_updated_at: float | None
    origin_job_id: int | None
    pending_posts: bool
    created_at: float
    lease_owner: str | None = None  # the instance advancing it now (see Store.claim_due)
    lease_until: float | None = None
    woken: bool = False  # woken while leased: its holder looks again at once
    parent_ts: str | None = None  # an @mention's thread, where the card is posted as a reply
    card_ts: str | None = None  # the card, when it is not the thread's parent (`thread_ts`)
    stopped_by: str | None = None  # who chose "Stop tracking" (None: not stopped by a person)
    stopped_at: float | None = None
    public: bool = False  # a public channel the app joined (None known: private)
    enterprise_id: str | None = None  # the workspace's Enterprise Grid org (None: not in one)


@dataclass(frozen=True)
class QuietPoll:
    """A status answer that changed nothing but the run's own record (the common look): the
    poller writes these together with the job's release, one statement for all of them."""

    job_id: int
    run_id: int
    motion_status: str
    at: float


@dataclass
class Run:
    id: int
    job_id: int
    number: int
    kind: RunKind
    request: dict[str, Any]
    author: str | None
    reply_channel: str | None
    reply_ts: str | None
    state: RunState
    sent_at: float | None
    baseline_completed_at: str | None
    baseline_url: str | None
    seen_new: bool
    attempts: int | None
    last_poll_at: float | None
    motion_status: str | None
    completed_at: str | None
    download_url: str | None
    expires_at: str | None
    sources: list[dict[str, Any]]
    error: str | None
    created_at: float
    finished_at: float | None
    # The stuck notice: notices recorded, how many were answered "Keep waiting", and when the
    # current period began (None: at `sent_at`). See bot/jobs/stopping.py.
    stuck_notices: int = 0
    stuck_waited: int = 0
    stuck_from: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_RUN_STATES


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
    state: PostState
    slack_ts: str | None
    attempts: int
    created_at: float
    run_number: int | None = None
    sent_at: float | None = None
    uploader: str | None = None  # an upload's: the lease owner that last started it


class Built(Protocol):
    """A message as `bot.slack.messages` builds it (the store needs only these two things)."""

    @property
    def kind(self) -> str: ...

    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NewPost:
    """A message to record in the outbox; `thread` False means the channel's top level."""

    kind: str
    payload: dict[str, Any]
    broadcast: bool = False
    channel_id: str | None = None
    thread: bool = True

    @classmethod
    def of(
        cls, message: Built, *, broadcast: bool = False, channel_id: str | None = None,
        thread: bool = True,
    ) -> NewPost:  # fmt: skip
        """The outbox entry for a built message, under the message's own kind."""
        return cls(message.kind, message.payload(), broadcast, channel_id, thread)


def job_from_row(row: dict[str, Any]) -> Job:
    row = dict(row)
    row["state"] = JobState(row["state"])
    row["sandbox"] = bool(row["sandbox"])
    row["pending_posts"] = bool(row["pending_posts"])
    row["woken"] = bool(row.get("woken"))
    row["public"] = bool(row.get("public"))
    return Job(**row)


def run_from_row(row: dict[str, Any]) -> Run:
    row = dict(row)
    row["kind"] = RunKind(row["kind"])
    row["state"] = RunState(row["state"])
    row["request"] = json.loads(row["request"])
    row["sources"] = json.loads(row["sources"]) if row["sources"] else []
    row["seen_new"] = bool(row["seen_new"])
    return Run(**row)


def post_from_row(row: dict[str, Any]) -> Post:
    row = dict(row)
    row["state"] = PostState(row["state"])
    row["payload"] = json.loads(row["payload"])
    row["broadcast"] = bool(row["broadcast"])
    row.pop("error", None)
    return Post(**row)
