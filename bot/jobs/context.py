"""What every stage of a job's life shares: its collaborators, the clock, the settings source,
and how a step says what it did. Each stage keeps its own state; only what all of them read
lives here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.jobs.admins import MotionAdmins
from bot.jobs.background import Background
from bot.jobs.files import FileIntake
from bot.jobs.requesting import requesting_workspace
from bot.jobs.settings import MotionRoutes, SettingsSource
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


# Each workspace's SlackOut (many workspaces): (team_id, enterprise_id) → the one that calls
# with that workspace's token.
SlackFor = Callable[[str, str | None], SlackOut]


def _untold(_what: str) -> None:
    """Nobody counts (metrics off)."""


def _never_forgotten(_team_id: str) -> bool:
    return False


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
    settings: SettingsSource  # per workspace: ask it with the job's or the request's team_id
    routes: MotionRoutes  # where a job's Motion calls go (its workspace's key, or the sandbox)
    files: FileIntake | None = None  # Slack files as attachments (None: refused, no links)
    upload_max_mb: float = 0.0  # UPLOAD_MAX_MB: 0, no video is uploaded into threads
    # PUBLIC_URL's lasting download links (None: results carry Motion's URL and "Fresh link")
    video_links: VideoLinks | None = None
    stuck_after: float = 3600.0  # STUCK_AFTER_MINUTES, in seconds
    stopping: bool = False  # set at SIGTERM: no new Motion write from then on
    events: JobEvents = field(default_factory=JobEvents)
    # Many workspaces: each workspace's SlackOut (None: one workspace, `slack` for everything)
    workspace_slack: SlackFor | None = None
    # Each workspace's Motion admins: its admin list and its Slack admins (users.info, kept)
    admins: MotionAdmins = field(default_factory=MotionAdmins)

    def slack_for(self, team_id: str, enterprise_id: str | None = None) -> SlackOut:
        """What Slack is told about work in workspace `team_id` goes through this: with that
        workspace's token (many workspaces), or the one workspace's client."""
        if self.workspace_slack is None:
            return self.slack
        return self.workspace_slack(team_id, enterprise_id)

    def slack_of(self, job: Job) -> SlackOut:
        """`slack_for` the job's workspace: everything done for a job outside a request."""
        return self.slack_for(job.team_id, job.enterprise_id)

    def slack_here(self) -> SlackOut:
        """`slack_for` the requesting workspace: a request's own calls (a form, the Home tab, a
        private answer) before or without a job. Outside a request, in many workspaces, there
        is no such workspace: a call made there is a mistake and fails, never guesses."""
        where = requesting_workspace()
        if where is None:
            if self.workspace_slack is None:
                return self.slack
            raise RuntimeError("a Slack call for the requesting workspace outside a request")
        return self.slack_for(*where)

    def sandbox_here(self) -> bool:
        """Whether the requesting workspace is in sandbox mode (no Motion key of its own nor
        MOTION_API_KEY), as its settings were last read here (`SettingsSource.sandbox_of`, no
        database read): the note on a request's own replies. A job's messages say the job's
        (`Job.sandbox`) instead. Outside a request: the environment's."""
        where = requesting_workspace()
        return self.settings.sandbox_of(where[0] if where is not None else "")

    # Whether a workspace was forgotten (uninstalled): set by `Uninstalls`, read from memory.
    forgotten: Callable[[str], bool] = _never_forgotten

    # A new job, recorded due now: the poller is roused without `wake`'s write (None: `wake`).
    due_now: Callable[[int], None] | None = None

    def wake_new(self, job_id: int) -> None:
        """Look at a job just recorded (due now, held by nobody) as soon as possible."""
        (self.due_now or self.wake)(job_id)

    def job(self, job_id: int) -> Job:
        job = self.store.job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job

    async def reread(self, job_id: int) -> tuple[Job, list[Run]]:
        """The job and its runs as they are now, after a look changed them: one statement, on
        the store's workers (on PostgreSQL a round trip made on the loop would hold every
        request meanwhile; measured in a burst of commands, such reads were a fifth of it)."""
        job, runs = await self.store.read_off_loop(self.store.job_and_runs, job_id)
        assert job is not None, f"job {job_id} vanished"
        return job, runs

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
        """An ephemeral message (`Message.payload()`) to one person of the requesting
        workspace, sent after the ack."""
        slack = self.slack_here()

        async def tell() -> None:
            await slack.tell_privately(channel_id, user_id, payload, thread_ts=thread_ts)

        self.background.run(tell())

    def react(self, job: Job, run: Run, name: str) -> None:
        """React on the reply a run came from, if it came from one."""
        if run.reply_ts and run.reply_channel:
            self.background.react(self.slack_of(job), run.reply_channel, run.reply_ts, name)
