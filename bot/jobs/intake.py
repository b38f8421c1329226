"""What people ask for, turned into recorded work before Slack gets its acknowledgement:
a command becomes a job, a thread reply a queued followup, a button a new run. Nothing here
calls Motion; the poller is woken and does that."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum

from bot import messages
from bot.command_line import UsageError, parse_request, strip_mention
from bot.jobs.card import job_label
from bot.jobs.context import REACT_FAILED, REACT_QUEUED, JobContext
from bot.motion import MotionRequest
from bot.store import HIDDEN_RUN_STATES, Job, JobState, NewPost, RunState

# Runs that never reached Motion: not counted as sent in `/motion list`.
_NOT_SENT = (RunState.WAITING, RunState.REJECTED, RunState.RESTARTED)


class ReplyKind(StrEnum):
    IGNORED = "ignored"  # not a job thread, or not addressed to the app
    DUPLICATE = "duplicate"  # a redelivery of a reply already taken
    QUEUED = "queued"
    INVALID = "invalid"  # answered in the thread with what to fix


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to a thread reply, for the listener's log and for tests."""

    kind: ReplyKind
    run_id: int | None = None


class Intake:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    def start_job(
        self, *, team_id: str, channel_id: str, user_id: str, response_url: str | None,
        request: MotionRequest,
    ) -> int:  # fmt: skip
        """Record the job before the command is acknowledged, so an ack never loses one."""
        ctx = self.ctx
        job_id, _ = ctx.store.create_job(
            team_id=team_id,
            channel_id=channel_id,
            requester=user_id,
            response_url=response_url,
            request=request.to_json(),
            sandbox=ctx.sandbox,
            now=ctx.clock(),
        )
        ctx.wake(job_id)
        return job_id

    def take_reply(
        self, *, event_keys: list[str], channel_id: str, thread_ts: str, ts: str, user_id: str,
        text: str, bot_user_id: str | None,
    ) -> ReplyOutcome:  # fmt: skip
        """Turn a human reply in a job thread into a queued followup, recorded before the ack.

        The delivery's keys (event_id, and channel + ts for the same reply arriving as both
        `message` and `app_mention`) are claimed in the same transaction."""
        ctx = self.ctx
        job = ctx.store.job_for_thread(channel_id, thread_ts)
        if job is None or job.state in (JobState.NEW, JobState.ABANDONED):
            return ReplyOutcome(ReplyKind.IGNORED)
        mentioned = False
        if bot_user_id:
            text, mentioned = strip_mention(text, bot_user_id)
        if ctx.requires_mention and not mentioned:
            return ReplyOutcome(ReplyKind.IGNORED)
        now = ctx.clock()
        try:
            if job.state == JobState.STOPPED:
                raise UsageError(messages.STOPPED_JOB_REPLY)
            request = parse_request(text)
        except UsageError as exc:
            post = NewPost.of(messages.usage_error(str(exc), job.sandbox))
            if not ctx.store.record_reply_error(job.id, event_keys, post, now):
                return ReplyOutcome(ReplyKind.DUPLICATE)
            ctx.background.react(channel_id, ts, REACT_FAILED)
            ctx.wake(job.id)
            return ReplyOutcome(ReplyKind.INVALID)
        run_id = ctx.store.add_followup(
            job.id, request.to_json(), user_id, channel_id, ts, now, event_keys=event_keys
        )
        if run_id is None:
            return ReplyOutcome(ReplyKind.DUPLICATE)
        ctx.background.react(channel_id, ts, REACT_QUEUED)
        if not ctx.store.has_active_run(job.id):
            ctx.wake(job.id)  # a busy job sends it after its run; waking would cost a poll
        return ReplyOutcome(ReplyKind.QUEUED, run_id)

    def retry_run(self, run_id: int, user_id: str) -> bool:
        """The "Send it again" button: a new run with the same request, once per button."""
        ctx = self.ctx
        new_id = ctx.store.copy_run(run_id, user_id, ctx.clock())
        if new_id is None:
            return False
        run = ctx.store.run(new_id)
        if run is not None:
            ctx.wake(run.job_id)
        return True

    def restart_job(self, run_id: int, user_id: str, team_id: str) -> int | None:
        """A failed job cannot take followups: start a new job in a new thread instead, from
        its first request and the refused reply."""
        ctx = self.ctx
        refused = ctx.store.run(run_id)
        first = ctx.store.first_request(refused.job_id) if refused else None
        if refused is None or first is None or refused.state != RunState.REJECTED:
            return None
        merged = MotionRequest.from_json(first).merged_with(
            MotionRequest.from_json(refused.request)
        )
        created = ctx.store.restart_from(
            run_id, merged.to_json(), user_id, team_id, ctx.sandbox, ctx.clock()
        )
        if created is not None:
            ctx.wake(created)
        return created

    def send_job_list(self, *, team_id: str, user_id: str, response_url: str | None) -> None:
        """`/motion list`, answered through response_url once the permalinks are known."""
        if response_url:
            self.ctx.background.run(self._send_job_list(team_id, user_id, response_url))

    async def _send_job_list(self, team_id: str, user_id: str, response_url: str) -> None:
        ctx = self.ctx
        jobs = ctx.store.recent_jobs(team_id, user_id, limit=10)

        async def listing(job: Job) -> messages.JobListing:
            runs = [r for r in ctx.store.runs(job.id) if r.state not in HIDDEN_RUN_STATES]
            link = (
                await ctx.slack.permalink(job.channel_id, job.thread_ts) if job.thread_ts else None
            )
            return messages.JobListing(
                prompt=job.prompt,
                status=job_label(job, runs, ctx.clock()),
                runs=sum(1 for r in runs if r.state not in _NOT_SENT),
                permalink=link,
                created_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.created_at)),
            )

        listings = await asyncio.gather(*(listing(job) for job in jobs))
        await ctx.slack.respond(
            response_url, messages.job_list(list(listings), ctx.sandbox).payload()
        )
