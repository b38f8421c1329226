"""The "Fresh link" button (results without PUBLIC_URL): the run's current download URL,
privately to whoever pressed it, in the job's thread."""

from __future__ import annotations

import logging

from bot.jobs.bounds import OtherWorkspace, run_for
from bot.jobs.context import JobContext
from bot.jobs.videos import VideoUrls
from bot.motion import MotionError
from bot.slack import messages
from bot.store import DatabaseUnavailable, Job, Run

log = logging.getLogger(__name__)


class FreshLinks:
    def __init__(self, ctx: JobContext, video_urls: VideoUrls) -> None:
        self.ctx = ctx
        self.video_urls = video_urls

    def send(
        self, team_id: str, run_id: int, user_id: str, channel_id: str | None = None,
        response_url: str | None = None,
    ) -> None:  # fmt: skip
        """After the ack, so Motion's time is not Slack's. `channel_id`: where the button was,
        to say so there when the database is away for a moment. `team_id`: the press's
        workspace; another workspace's run is refused through `response_url` (the press's own
        answer, which needs no token)."""
        self.ctx.background.run(self._send(team_id, run_id, user_id, channel_id, response_url))

    def _find(
        self, team_id: str, run_id: int
    ) -> tuple[Run | None, Job | None, tuple[Job, Run] | None]:
        """The run, its job and (when finished) both as `VideoUrls` wants them: on the store's
        workers, so a database that makes it wait holds up nothing else."""
        of_job = run_for(self.ctx.store, team_id, run_id)
        if of_job is None:
            return None, None, None
        run, job = of_job.run, of_job.job
        return run, job, self.video_urls.finished_run(job.id, run.number, job.team_id)

    async def _send(
        self, team_id: str, run_id: int, user_id: str, channel_id: str | None,
        response_url: str | None,
    ) -> None:  # fmt: skip
        ctx = self.ctx
        slack = ctx.slack_here()  # the clicker's workspace
        try:
            run, job, found = await ctx.store.read_off_loop(self._find, team_id, run_id)
        except OtherWorkspace as refused:
            log.warning("fresh link refused: %s", refused, extra={"team": team_id})
            if response_url:
                await ctx.slack.respond(
                    response_url, messages.other_workspace(ctx.sandbox_here()).payload()
                )
            return
        except DatabaseUnavailable as away:
            log.info("fresh link for run %s: %s; the clicker is asked to try again", run_id, away)
            if channel_id:
                said = messages.database_away(ctx.sandbox_here(), lookup=True).payload()
                await slack.tell_privately(channel_id, user_id, said, thread_ts=None)
            return
        if run is None or job is None:
            return
        url: str | None = None
        if found is not None:
            try:
                url = await self.video_urls.current(*found)
            except (MotionError, DatabaseUnavailable) as exc:  # the message says: no link now
                log.info("fresh link for run %s: %s", run_id, type(exc).__name__)
        message = messages.fresh_link(url, run.number, sandbox=ctx.sandbox_here())
        await slack.tell_privately(
            job.channel_id, user_id, message.payload(), thread_ts=job.thread_ts
        )
