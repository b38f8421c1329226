"""The service: where Motion, the store and Slack meet. One object for the app to wire; it
builds the stages of a job's life, each given the collaborators and the other stages it
calls, and offers their entry points to the listeners, the poller and the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.jobs.admission import Admissions
from bot.jobs.background import Background
from bot.jobs.card import Card
from bot.jobs.context import JobContext, JobEvents, SlackFor
from bot.jobs.files import FileIntake
from bot.jobs.fresh_link import FreshLinks
from bot.jobs.intake import Intake
from bot.jobs.mentions import Mentions
from bot.jobs.motion_calls import MotionCalls
from bot.jobs.outbox import Outbox
from bot.jobs.outcomes import Outcomes
from bot.jobs.recovery import Recovery
from bot.jobs.settings import (
    MotionRoutes,
    SameForEveryTeam,
    SettingsFromStore,
    SettingsSource,
    WorkspaceSettings,
)
from bot.jobs.settings_form import SettingsForms
from bot.jobs.step import Stepper
from bot.jobs.stopping import Stops
from bot.jobs.surfaces import Surfaces
from bot.jobs.uninstall import Uninstalls
from bot.jobs.uploads import Uploads
from bot.jobs.videos import VideoLinks, VideoUrls
from bot.jobs.workflow import WorkflowSteps
from bot.jobs.workflow_ends import WorkflowEnds
from bot.motion import MotionClient
from bot.motion.download import Downloader
from bot.schedule import PollSchedule
from bot.slack.out import SlackOut
from bot.store import Store


class JobService:
    """Intake (commands, replies, buttons, forms, the Home tab) plus `advance` for the poller
    and `recover` at start. `workspaces`: each workspace's settings (default: the built-in
    ones, the same for every workspace). `workspace_slack` (many workspaces): each
    workspace's SlackOut; without it, `slack` is the one workspace's for everything."""

    def __init__(
        self,
        store: Store,
        motion: MotionClient,
        slack: SlackOut,
        *,
        schedule: PollSchedule,
        sandbox: bool,
        workspaces: SettingsSource | None = None,
        clock: Callable[[], float] = time.time,
        wake: Callable[[int], None] | None = None,
        files: FileIntake | None = None,
        upload_max_mb: float = 0.0,
        video_links: VideoLinks | None = None,
        stuck_after_seconds: float = 3600.0,
        events: JobEvents | None = None,
        workspace_slack: SlackFor | None = None,
    ) -> None:
        settings = workspaces or SameForEveryTeam(WorkspaceSettings(sandbox=sandbox))
        self.ctx = ctx = JobContext(
            store=store,
            motion=motion,
            slack=slack,
            schedule=schedule,
            background=Background(),
            clock=clock,
            wake=wake or (lambda job_id: None),
            settings=settings,
            routes=MotionRoutes(settings, store.read_off_loop),
            files=files,
            upload_max_mb=upload_max_mb,
            video_links=video_links,
            stuck_after=stuck_after_seconds,
            events=events or JobEvents(),
            workspace_slack=workspace_slack,
        )
        self.store, self.slack = store, slack
        # The sandbox note on a request's own replies: the requesting workspace's mode.
        self.sandbox_here = ctx.sandbox_here
        self._compose(ctx, settings, motion)

    def _compose(self, ctx: JobContext, settings: SettingsSource, motion: MotionClient) -> None:
        """The stages, each given the ones it hands work to (none reaches for another)."""
        store = ctx.store
        self.ends = WorkflowEnds(ctx)  # how a Workflow Builder step ends
        self.admissions = Admissions(ctx, self.ends)
        self.intake = Intake(ctx, self.admissions)
        # Settings in Slack: only where they are kept in the store (the app's; not a tool's).
        self.settings_forms = (
            SettingsForms(ctx, settings) if isinstance(settings, SettingsFromStore) else None
        )
        self.surfaces = Surfaces(ctx, self.admissions, self.intake, self.settings_forms)
        self.mentions = Mentions(ctx, self.admissions, self.intake, self.surfaces)
        self.workflow = WorkflowSteps(ctx, self.admissions, self.ends)
        self.stops = Stops(ctx, self.ends)
        self.outcomes = Outcomes(ctx, self.ends)
        self.recovery = Recovery(ctx, self.outcomes, self.ends)
        # Where a run's MP4 is now, for /v/ links, "Fresh link" and uploads after a retry.
        self.video_urls = VideoUrls(store, motion, routes=ctx.routes)
        self.fresh_links = FreshLinks(ctx, self.video_urls)
        # Motion's CDN on its own loopback host and port (the sandbox) may be plain http.
        self.downloader = Downloader(motion.base_url)
        self.uploads = Uploads(ctx, self.video_urls, self.downloader)
        self.uninstalls = Uninstalls(ctx)  # app_uninstalled, tokens_revoked, late deliveries
        calls = MotionCalls(ctx, self.outcomes)
        self.stepper = Stepper(
            ctx, Card(ctx, self.ends), Outbox(ctx), calls, self.outcomes, self.uploads, self.stops
        )
        self._offer_entry_points()

    def _offer_entry_points(self) -> None:
        """What the listeners call, each the stage's own method (documented there)."""
        admissions, intake, surfaces, mentions = (
            self.admissions, self.intake, self.surfaces, self.mentions,
        )  # fmt: skip
        # Runs asked for: commands and buttons (through the one door), previews, usage.
        self.ask_for_run = admissions.ask_for_run
        self.ask_for_run_off_loop = admissions.ask_for_run_off_loop
        self.confirm = admissions.confirm
        self.cancel = admissions.cancel
        self.usage_view = admissions.usage_view
        self.usage_report = intake.usage_report
        self.usage_answer = intake.usage_answer
        self.variation_of = intake.variation_of
        self.send_job_list = intake.send_job_list
        # Thread replies and @mentions, with their Slack files.
        self.take_file_reply = mentions.take_file_reply
        self.take_mention = mentions.take_mention
        self.take_direct_message = mentions.take_direct_message
        # Workflow Builder steps.
        self.take_step = self.workflow.take_off_loop
        # The form, Refine and the Home tab.
        self.open_new_form = surfaces.open_new_form
        self.open_refine_form = surfaces.open_refine_form
        self.submit_new_form_with_files = mentions.submit_new_form_with_files
        self.submit_refine = surfaces.submit_refine
        self.refresh_home = surfaces.refresh_home
        # Buttons on the card, a stuck notice and results.
        self.stop_tracking = self.stops.stop_tracking
        self.stop_clicked = self.stops.stop_clicked
        self.keep_waiting = self.stops.keep_waiting
        self.send_fresh_link = self.fresh_links.send
        # Uninstalls, and the deliveries that come late for a forgotten workspace.
        self.forget_workspace = self.uninstalls.forget
        self.revoke_grants = self.uninstalls.revoke_grants
        self.workspace_forgotten = self.uninstalls.is_forgotten
        self.many_workspaces = self.ctx.workspace_slack is not None  # a token per workspace
        # The poller's and the app's.
        self.advance = self.stepper.advance

    def recover(self) -> int:
        """At start: a workspace forgotten meanwhile is swept, then every job is resumed
        (`Recovery.recover`); returns how many."""
        self.uninstalls.sweep()
        return self.recovery.recover()

    @property
    def wake(self) -> Callable[[int], None]:
        return self.ctx.wake

    @wake.setter
    def wake(self, wake: Callable[[int], None]) -> None:
        self.ctx.wake = wake

    @property
    def due_now(self) -> Callable[[int], None] | None:
        return self.ctx.due_now

    @due_now.setter
    def due_now(self, due_now: Callable[[int], None] | None) -> None:
        self.ctx.due_now = due_now

    @property
    def stopping(self) -> bool:
        return self.ctx.stopping

    @stopping.setter
    def stopping(self, stopping: bool) -> None:
        self.ctx.stopping = stopping

    async def drain_background(self, timeout: float = 5.0) -> None:
        await self.ctx.background.drain(timeout)

    async def aclose(self) -> None:
        """At stop, after the drain: an upload still streaming is left as "started" for the
        next boot (which checks Slack for its file before anything else)."""
        self.uploads.abandon()
        await asyncio.sleep(0)  # let the cancelled uploads unwind before their client closes
        await self.downloader.aclose()
