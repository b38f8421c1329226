"""The "Fresh link" button (results without PUBLIC_URL): the run's current download URL,
privately to whoever pressed it, in the job's thread."""

from __future__ import annotations

import logging

from bot.jobs.context import JobContext
from bot.jobs.videos import VideoUrls
from bot.motion import MotionError
from bot.slack import messages

log = logging.getLogger(__name__)


class FreshLinks:
    def __init__(self, ctx: JobContext, video_urls: VideoUrls) -> None:
        self.ctx = ctx
        self.video_urls = video_urls

    def send(self, run_id: int, user_id: str) -> None:
        """After the ack, so Motion's time is not Slack's."""
        self.ctx.background.run(self._send(run_id, user_id))

    async def _send(self, run_id: int, user_id: str) -> None:
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
        message = messages.fresh_link(url, run.number, sandbox=ctx.sandbox)
        await ctx.slack.tell_privately(
            job.channel_id, user_id, message.payload(), thread_ts=job.thread_ts
        )
