"""The service: where Motion, the store and Slack meet. One object for the app to wire, made
of the stages of a job's life, each in its own module."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot import messages
from bot.jobs.background import Background
from bot.jobs.card import Card
from bot.jobs.context import JobContext
from bot.jobs.files import FileIntake
from bot.jobs.mentions import Mentions
from bot.jobs.motion_calls import MotionCalls, bucket
from bot.jobs.outbox import Outbox
from bot.jobs.outcomes import Outcomes
from bot.jobs.spend import SpendPolicy
from bot.jobs.step import Stepper
from bot.jobs.stopping import Stops
from bot.jobs.uploads import Uploads
from bot.jobs.videos import VideoLinks, VideoUrls
from bot.messages import Message
from bot.motion import MotionClient, MotionError
from bot.motion.download import Downloader
from bot.schedule import PollSchedule
from bot.slack_out import SlackOut
from bot.store import Job, LeaseLost, Run, Store, lease_fence

log = logging.getLogger(__name__)
EVENT_MEMORY_SECONDS = 7 * 86400  # Slack retries for minutes; a week is generous


class JobService(Mentions):
    """Intake (commands, replies, buttons, forms, the Home tab) plus `advance` for the poller and `recover` at start."""

    def __init__(
        self,
        store: Store,
        motion: MotionClient,
        slack: SlackOut,
        *,
        schedule: PollSchedule,
        sandbox: bool,
        notify_channel: str | None = None,
        requires_mention: bool = False,
        policy: SpendPolicy | None = None,
        clock: Callable[[], float] = time.time,
        wake: Callable[[int], None] | None = None,
        files: FileIntake | None = None,
        upload_max_mb: float = 0.0,
        video_links: VideoLinks | None = None,
        stuck_after_seconds: float = 3600.0,
    ) -> None:
        ctx = JobContext(
            store=store,
            motion=motion,
            slack=slack,
            schedule=schedule,
            background=Background(slack),
            clock=clock,
            wake=wake or (lambda job_id: None),
            sandbox=sandbox,
            notify_channel=notify_channel,
            requires_mention=requires_mention,
            policy=policy or SpendPolicy(),
            files=files,
            upload_max_mb=upload_max_mb,
            video_links=video_links,
            stuck_after=stuck_after_seconds,
        )
        super().__init__(ctx)
        self.store, self.slack, self.sandbox = store, slack, sandbox
        self.outcomes = Outcomes(ctx)
        calls = MotionCalls(ctx, self.outcomes)
        # Where a run's MP4 is now, for /v/ links, "Fresh link" and uploads after a retry.
        self.video_urls = VideoUrls(store, motion)
        # Motion's CDN on its own loopback host and port (the sandbox) may be plain http.
        self.downloader = Downloader(motion.base_url)
        self.uploads = Uploads(ctx, self.video_urls, self.downloader)
        self.stops = Stops(ctx)
        self._stepper = Stepper(
            ctx, Card(ctx), Outbox(ctx), calls, self.outcomes, self.uploads, self.stops
        )

    @property
    def policy(self) -> SpendPolicy:
        return self.ctx.policy

    @property
    def wake(self) -> Callable[[int], None]:
        return self.ctx.wake

    @wake.setter
    def wake(self, wake: Callable[[int], None]) -> None:
        self.ctx.wake = wake

    @property
    def stopping(self) -> bool:
        return self.ctx.stopping

    @stopping.setter
    def stopping(self, stopping: bool) -> None:
        self.ctx.stopping = stopping

    def stop_tracking(
        self, value: str, user_id: str, channel_id: str | None, message_ts: str | None
    ) -> Message | None:
        """The "Stop tracking" button (card or stuck notice); what the clicker alone is told."""
        return self.stops.stop_tracking(value, user_id, channel_id, message_ts)

    def keep_waiting(
        self, value: str, user_id: str, channel_id: str | None, message_ts: str | None
    ) -> Message | None:
        """The "Keep waiting" button on a stuck notice; what the clicker alone is told."""
        return self.stops.keep_waiting(value, user_id, channel_id, message_ts)

    async def advance(
        self, job_id: int, claimed: tuple[Job, list[Run]] | None = None
    ) -> float | None:
        """Do what the job needs now; returns when it next needs a look (None: until woken).
        `claimed`: the job and its runs as the poller's claim read them (saves a read)."""
        return await self._stepper.advance(job_id, claimed)

    def recover(self) -> int:
        """At start, before any work: settle calls a dead process left in flight, resume all.

        A create whose answer never came cannot be checked (Motion has no list endpoint), so
        its thread is told and offered a button; a followup can be checked against the job's
        status, so it is verified by polling before anything is said.
        """
        ctx = self.ctx
        now = ctx.clock()
        ctx.store.release_predecessors()  # this instance's own leases from before a kill
        for run in ctx.store.interrupted_runs(now):
            # Under the job's lease: an instance starting beside a live one never settles a
            # call that instance still has in flight.
            if not ctx.store.claim_job(run.job_id, now):
                continue
            try:
                with lease_fence(run.job_id, ctx.store.owner):
                    self.outcomes.settle_interrupted(ctx.job(run.job_id), run)
            except LeaseLost:
                continue
            finally:
                ctx.store.release(run.job_id, now, now)
        ctx.store.forget_events_before(now - EVENT_MEMORY_SECONDS)
        ctx.store.forget_previews_before(now - EVENT_MEMORY_SECONDS)
        for duration, seconds in ctx.store.generation_times():
            ctx.schedule.learn(duration, seconds)
        for run in ctx.store.generating_runs():  # a restart keeps what the runs going tell
            assert run.sent_at is not None
            ctx.schedule.going(run.id, bucket(run), now - run.sent_at)
        return ctx.store.resume_all(now)

    async def drain_background(self, timeout: float = 5.0) -> None:
        await self.ctx.background.drain(timeout)

    async def aclose(self) -> None:
        """At stop, after the drain: an upload still streaming is left as "started" for the
        next boot (which checks Slack for its file before anything else)."""
        self.uploads.abandon()
        await asyncio.sleep(0)  # let the cancelled uploads unwind before their client closes
        await self.downloader.aclose()

    def send_fresh_link(self, run_id: int, user_id: str) -> None:
        """ "Fresh link" (results without PUBLIC_URL): the run's current URL, privately to
        whoever pressed it, in the thread; after the ack, so Motion's time is not Slack's."""
        self.ctx.background.run(self._fresh_link(run_id, user_id))

    async def _fresh_link(self, run_id: int, user_id: str) -> None:
        ctx = self.ctx
        run = ctx.store.run(run_id)
        job = ctx.store.job(run.job_id) if run is not None else None
        if run is None or job is None:
            return
        found = self.video_urls.finished_run(job.id, run.number)
        url: str | None = None
        if found is not None:
            try:
                url = await self.video_urls.current(*found)
            except MotionError as exc:
                log.info("fresh link for run %s: Motion failed (%s)", run_id, type(exc).__name__)
        message = messages.fresh_link(url, run.number, sandbox=self.sandbox)
        await ctx.slack.tell_privately(
            job.channel_id, user_id, message.payload(), thread_ts=job.thread_ts
        )
