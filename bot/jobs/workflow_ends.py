"""How a Workflow Builder step ends: completed with its outputs when its job's first run is ready,
or failed with the words a person reads on the card (or in the private answer, when nothing
was started).

A step with a job ends through the job's outbox: the completion is a post of `STEP_KIND`
recorded in the transaction that records the run's end (the store claims the execution there,
so it is recorded once), and sent by whichever instance holds the job when it flushes
(`Outbox`). A step that ends with no job (refused at the door, its preview cancelled) is
recorded as ended with its words and sent at once from here; a crash before Slack had them is
repaired at the next start (`resend`).

Every call uses the app's own bot token: the event's `bot_access_token` lasts 15 minutes or
until the step completes, while a video takes longer (docs/choices.md).
"""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.context import JobContext
from bot.slack import messages
from bot.slack.messages.steps import MAX_STEP_ERROR
from bot.slack.out import SlackFailure, SlackOut
from bot.store import STEP_KIND, Job, NewPost, Run, RunKind, RunState, StepPlace

log = logging.getLogger(__name__)
SEND_ATTEMPTS = 4  # a job-less ending's call, tried at once then after 1, 2 and 4 s
RESEND_WITHIN_SECONDS = 86400.0  # at start, job-less endings this recent are sent if unsent
# How a create run's end reads on its card (an unknown outcome offers "Send it again", so the
# step waits for the resend's end rather than failing).
FAILED_RUN_STATES = (RunState.FAILED, RunState.REJECTED)


class WorkflowEnds:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------ steps with a job

    def has_step(self, job: Job) -> bool:
        """Whether a running step waits for this job (read only when a run ends)."""
        return self.ctx.store.running_step(job.id) is not None

    def run_failed(self, job: Job, run: Run, state: RunState, reason: str) -> list[NewPost]:
        """The step's failure when the job's first run (or its resend) ended without a video;
        nothing for a followup or an outcome not yet known."""
        if run.kind != RunKind.CREATE or state not in FAILED_RUN_STATES or not self.has_step(job):
            return []
        return [failure(messages.step_failed(str(state), reason))]

    def stopped(self, job: Job, words: str) -> list[NewPost]:
        """The step's failure when its job stops (Motion stopped answering for it, or someone
        stopped tracking it) before the first video."""
        return [failure(words)] if self.has_step(job) else []

    def unusable(self, job: Job) -> list[NewPost]:
        """The step's failure when its channel cannot be used (the card could not be posted)."""
        return [failure(messages.STEP_CHANNEL_UNUSABLE)] if self.has_step(job) else []

    async def ready(self, job: Job, run: Run, video_url: str) -> list[NewPost]:
        """The step's completion with its outputs when the first video is ready. The thread's
        link is asked for now: a transient failure propagates (the look backs off and the
        result is recorded at a later look, with its link)."""
        if run.kind != RunKind.CREATE or job.thread_ts is None or not self.has_step(job):
            return []
        try:
            link = await self.ctx.slack_of(job).thread_permalink(job.channel_id, job.thread_ts)
        except SlackFailure as exc:
            if not exc.permanent:
                raise
            log.warning("job %s: no link to its thread for the step (%s)", job.id, exc.code)
            link = ""
        outputs = messages.step_outputs(video_url=video_url, thread_permalink=link, job_id=job.id)
        return [NewPost(STEP_KIND, {"outputs": outputs}, thread=False)]

    # ------------------------------------------------------------ steps with no job

    def refuse(self, place: StepPlace, words: str) -> None:
        """End an execution nothing was started for: recorded once (a redelivery records and
        sends nothing), then sent after the ack."""
        error = messages.step_refused(words)
        if self.ctx.store.refuse_step(place, error, self.ctx.clock()):
            log.info("workflow step %s: not started (%s)", place.execution_id, error)
            self.ctx.background.run(self.send(self.ctx.slack_here(), place.execution_id, error))

    def end_preview(self, execution_id: str | None, words: str) -> None:
        """End an execution whose MOTION_CONFIRM preview will not be started, once."""
        if execution_id is None:
            return
        error = messages.step_refused(words)
        if self.ctx.store.end_previewed_step(execution_id, error, self.ctx.clock()):
            log.info("workflow step %s: its preview ended (%s)", execution_id, error)
            self.ctx.background.run(self.send(self.ctx.slack_here(), execution_id, error))

    async def send(self, slack: SlackOut, execution_id: str, error: str) -> None:
        """functions.completeError for a job-less ending (with its workspace's `slack`),
        retried a few times; still unsent after that, it is sent again at the next start."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                await slack.complete_step(execution_id, error=error)
            except SlackFailure as exc:
                if exc.permanent:
                    log.error(
                        "workflow step %s: Slack refused its end (%s)", execution_id, exc.code
                    )
                    break
                if attempt + 1 < SEND_ATTEMPTS:
                    await asyncio.sleep(2.0**attempt)
                continue
            await self.ctx.store.off_loop(
                self.ctx.store.mark_step_sent, execution_id, self.ctx.clock()
            )
            return
        log.warning("workflow step %s: its end is not sent yet", execution_id)

    def resend(self) -> int:
        """At start: job-less endings a crash (or Slack) kept from being sent, sent now."""
        unsent = self.ctx.store.unsent_step_errors(self.ctx.clock() - RESEND_WITHIN_SECONDS)
        for execution_id, error, team_id in unsent:
            self.ctx.background.run(self.send(self.ctx.slack_for(team_id), execution_id, error))
        return len(unsent)


def failure(words: str) -> NewPost:
    """The outbox row that fails a step with `words` (the store adds the execution's id)."""
    return NewPost(STEP_KIND, {"error": messages.shorten(words, MAX_STEP_ERROR)}, thread=False)
