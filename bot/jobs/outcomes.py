"""How a run ends: each ending recorded with the messages that announce it, in one transaction,
so a crash can lose neither the state nor what the thread must be told."""

from __future__ import annotations

import logging

from bot.jobs.context import REACT_FAILED, JobContext, RunEnding
from bot.jobs.workflow_ends import WorkflowEnds
from bot.motion import AuthenticationError, InsufficientCredits, JobStatus, MotionError
from bot.slack import messages
from bot.slack.messages import Message
from bot.store import UPLOAD_KIND, Job, JobState, NewPost, Run, RunKind, RunState

log = logging.getLogger(__name__)
_ENDINGS: dict[RunState, RunEnding] = {
    RunState.DONE: "done",
    RunState.FAILED: "failed",
    RunState.REJECTED: "rejected",
    RunState.UNKNOWN: "unknown",
}


class Outcomes:
    """`ends`: a Workflow Builder step waiting for the job ends with its first run."""

    def __init__(self, ctx: JobContext, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.ends = ends

    def finish(
        self, job: Job, run: Run, state: RunState, message: Message, *, error: str,
        react: str | None = None,
    ) -> None:  # fmt: skip
        """`error` is the reason in a few plain words: the card shows it."""
        self.ctx.schedule.forget(run.id)
        posts = [NewPost.of(message), *self.ends.run_failed(job, run, state, error)]
        settled = self.ctx.store.finish_run(
            run.id, job.id, state=state, error=error, now=self.ctx.clock(), posts=posts
        )
        if settled:  # else already ended (stopped, say): told and reacted to then
            self.ctx.events.run_ended(_ENDINGS.get(state, "failed"))
            if react:
                self.ctx.react(job, run, react)

    def reject(self, job: Job, run: Run, message: Message, reason: str) -> None:
        """The run was not started; its reply (if any) gets the "failed" reaction."""
        self.finish(job, run, RunState.REJECTED, message, error=reason, react=REACT_FAILED)

    def refused(self, job: Job, run: Run, exc: MotionError, message: Message) -> None:
        self.reject(job, run, message, messages.reason_for(exc))

    def out_of_credits(
        self, job: Job, run: Run, exc: InsufficientCredits, *, started: bool
    ) -> None:
        """402, at create or during generation: the numbers come from Motion's body."""
        message = messages.insufficient_credits(
            balance=exc.current_balance,
            minimum=exc.minimum_required,
            message=exc.message,
            followup=run.kind == RunKind.FOLLOWUP,
            sandbox=job.sandbox,
        )
        state = RunState.FAILED if started else RunState.REJECTED
        self.finish(job, run, state, message, error=messages.reason_for(exc), react=REACT_FAILED)

    def stop(self, job: Job, run: Run, exc: MotionError) -> None:
        """Motion no longer answers for this job (401: the key; 404: the job)."""
        log.warning("job %s: Motion answered %s; no longer following it", job.id, exc.status)
        if isinstance(exc, AuthenticationError):
            message = messages.auth_failed(sandbox=job.sandbox)
        else:
            message = messages.job_not_found(sandbox=job.sandbox)
        self.ctx.schedule.forget(run.id)
        reason = messages.reason_for(exc)
        step = self.ends.stopped(job, messages.step_failed(str(JobState.STOPPED), reason))
        self.ctx.store.stop_job(
            job.id, run.id, reason, [NewPost.of(message), *step], self.ctx.clock()
        )
        self.ctx.events.run_ended("stopped")
        self.ctx.react(job, run, REACT_FAILED)

    def create_unknown(self, job: Job, run: Run, error: str) -> None:
        """A create whose answer never came: say so, offer a resend, never resend alone."""
        log.warning("job %s run %s: the create's answer was lost (%r)", job.id, run.number, error)
        unknown = messages.outcome_unknown(
            run_number=run.number, followup=False, run_id=run.id, sandbox=job.sandbox
        )
        self.finish(job, run, RunState.UNKNOWN, unknown, error=messages.ANSWER_LOST)

    def settle_interrupted(self, job: Job, run: Run) -> None:
        """A Motion write whose answer this process never saw: a followup can be checked
        against the job's status; a create cannot (Motion has no list), so its thread is told."""
        if run.kind == RunKind.FOLLOWUP and job.motion_job_id:
            self.ctx.store.mark_verifying(run.id)
            return
        self.create_unknown(job, run, "interrupted before Motion answered")

    async def result(self, job: Job, run: Run, status: JobStatus) -> None:
        """Record the result and every message announcing it in one transaction."""
        ctx = self.ctx
        assert status.download_url is not None and job.thread_ts is not None
        if status.sources_dropped:  # once per run: the answer recorded as its result
            log.warning(
                "job %s run %s: Motion listed %s sources; the first %s are kept",
                job.id, run.number, len(status.sources) + status.sources_dropped,
                len(status.sources),
            )  # fmt: skip
        expires_at = status.output.expires_at if status.output else None
        lasting = ctx.video_links is not None and ctx.video_links.public_url is not None
        video_url = ctx.download_link(job, run.number, status.download_url)
        parts = messages.result_messages(
            requester=run.author or job.requester,
            run_number=run.number,
            download_url=video_url,
            sources=status.credits,
            expires_at=None if lasting else expires_at,
            sandbox=job.sandbox,
            run_id=run.id,
            fresh_link=not lasting,
        )
        posts = [NewPost.of(part, broadcast=(i == 0)) for i, part in enumerate(parts)]
        if ctx.upload_max_mb > 0:  # the MP4 itself, after the result (bot/jobs/uploads.py)
            posts.append(upload_post(run, status.download_url))
        notify_channel = (
            await ctx.store.read_off_loop(ctx.settings.for_team, job.team_id)
        ).notify_channel
        if notify_channel:
            link = await ctx.slack_of(job).permalink(job.channel_id, job.thread_ts)
            notice = messages.notify_message(
                requester=run.author or job.requester,
                prompt=run.request["prompt"],
                permalink=link,
                run_number=run.number,
                sandbox=job.sandbox,
                private=not job.public,
            )
            posts.append(NewPost.of(notice, channel_id=notify_channel, thread=False))
        # A workflow step waiting for this video completes once the result is in the thread.
        posts += await self.ends.ready(job, run, video_url)
        settled = ctx.store.finish_run(
            run.id,
            job.id,
            state=RunState.DONE,
            posts=posts,
            now=ctx.clock(),
            download_url=status.download_url,
            completed_at=status.completed_at,
            expires_at=expires_at,
            sources=status.sources,
        )
        if settled:
            ctx.events.run_ended("done")


def upload_post(run: Run, url: str) -> NewPost:
    """The outbox row of a run's video: what the uploader needs, recorded with the result."""
    payload = {
        "url": url,
        "run": run.number,
        "filename": messages.video_filename(run.number),
        "title": messages.video_title(run.number, str(run.request.get("prompt") or "")),
    }
    return NewPost(UPLOAD_KIND, payload)
