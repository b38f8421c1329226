"""What every stage of a job's life shares: its collaborators, the clock, the settings source,
and how a step says what it did. Each stage keeps its own state; only what all of them read
lives here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.jobs.background import Background
from bot.jobs.files import FileIntake
from bot.jobs.settings import SettingsSource
from bot.jobs.videos import VideoLinks
from bot.motion import MotionClient
from bot.schedule import PollSchedule
from bot.slack.out import SlackOut
from bot.store import Job, Run, Store

log = logging.getLogger("bot.jobs")

REACT_QUEUED = "hourglass_flowing_sand"
REACT_SENT = "arrow_forward"
REACT_FAILED = "x"


@dataclass(frozen=True)
class Step:
    """What one step did to a job.

    `delay`: seconds until the job needs its next look (None: only when something wakes it).
    `changed`: the job or its runs changed in the store, so the caller reads them again;
    when False, `run` is the run as the step left it (the caller need not read anything).
    `failed`: the step met a failure and counted it, so the job's failure count stays.
    """

    delay: float | None
    changed: bool = True
    failed: bool = False
    run: Run | None = None


# What became of a video upload: in the thread; skipped (no length, empty, over UPLOAD_MAX_MB);
# an attempt failed and another follows; given up (the result's link stays).
UploadOutcome = Literal["uploaded", "skipped", "retried", "failed"]
# Why a run was refused by the spend controls: the channel, or which limit.
RefusalReason = Literal["channel", "user_day", "workspace_month"]
# How a run ended: its result recorded, failed in Motion, never started, its create's answer
# lost, or no longer followed because Motion stopped answering for its job (401/404).
RunEnding = Literal["done", "failed", "rejected", "unknown", "stopped"]


def _untold(_what: str) -> None:
    """Nobody counts (metrics off)."""


@dataclass(frozen=True)
class JobEvents:
    """What operators count, told as it happens (bot/metrics.py, wired by bot/app.py); plain
    callables, so the stages know nothing of how it is counted. Each may be called on a store
    worker thread as well as on the loop."""

    upload: Callable[[UploadOutcome], None] = _untold
    run_refused: Callable[[RefusalReason], None] = _untold
    run_ended: Callable[[RunEnding], None] = _untold


@dataclass
class JobContext:
    store: Store
    motion: MotionClient
    slack: SlackOut
    schedule: PollSchedule
    background: Background
    clock: Callable[[], float]
    wake: Callable[[int], None]
    sandbox: bool
    settings: SettingsSource  # per workspace: ask it with the job's or the request's team_id
    files: FileIntake | None = None  # Slack files as attachments (None: refused, no links)
    upload_max_mb: float = 0.0  # UPLOAD_MAX_MB: 0, no video is uploaded into threads
    # PUBLIC_URL's lasting download links (None: results carry Motion's URL and "Fresh link")
    video_links: VideoLinks | None = None
    stuck_after: float = 3600.0  # STUCK_AFTER_MINUTES, in seconds
    stopping: bool = False  # set at SIGTERM: no new Motion write from then on
    events: JobEvents = field(default_factory=JobEvents)
    # A new job, recorded due now: the poller is roused without `wake`'s write (None: `wake`).
    due_now: Callable[[int], None] | None = None

    def wake_new(self, job_id: int) -> None:
        """Look at a job just recorded (due now, held by nobody) as soon as possible."""
        (self.due_now or self.wake)(job_id)

    def job(self, job_id: int) -> Job:
        job = self.store.job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job

    def backoff(self, job_id: int, reason: str, retry_after: float | None = None) -> Step:
        """Count one more consecutive failure for the job and wait accordingly. `reason` is
        logged as it is: Motion's words in it go in as `repr`, so they cannot forge lines."""
        errors = self.store.add_error(job_id)
        log.info("job %s: %s; retry %s", job_id, reason, errors)
        return Step(self.schedule.error_delay(errors, retry_after), changed=False, failed=True)

    def download_link(self, job: Job, run_number: int, motion_url: str) -> str:
        """Where a download button or link points: the app's lasting link with PUBLIC_URL,
        Motion's own (expiring) URL without."""
        links = self.video_links
        lasting = links.link(job.id, run_number, job.team_id) if links is not None else None
        return lasting or motion_url

    def tell_privately(
        self, channel_id: str, user_id: str, payload: dict[str, Any], thread_ts: str | None
    ) -> None:
        """An ephemeral message (`Message.payload()`) to one person, sent after the ack."""

        async def tell() -> None:
            await self.slack.tell_privately(channel_id, user_id, payload, thread_ts=thread_ts)

        self.background.run(tell())

    def react(self, run: Run, name: str) -> None:
        """React on the reply a run came from, if it came from one."""
        if run.reply_ts and run.reply_channel:
            self.background.react(run.reply_channel, run.reply_ts, name)
