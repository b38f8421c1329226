"""What people ask for, turned into recorded work before Slack gets its acknowledgement:
a command becomes a job, a thread reply a queued followup, a button a new run. Every one of
them asks through `Admissions.ask_for_run`, where the spend controls are applied. Nothing here
calls Motion; the poller is woken and does that."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.command_line import UsageError, parse_request, strip_mention
from bot.jobs.admission import (
    VARIATION_KEY,
    Admissions,
    AskKind,
    FollowupAsk,
    NewJobAsk,
    RunAsk,
)
from bot.jobs.bounds import job_for, run_for
from bot.jobs.card import job_label
from bot.jobs.context import REACT_FAILED, JobContext
from bot.jobs.spend import utc_day, utc_month
from bot.motion import MAX_ATTACHMENTS, FileAttachment, MotionRequest
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.out import SlackOut
from bot.store import (
    HIDDEN_RUN_STATES,
    DatabaseUnavailable,
    Job,
    JobState,
    NewPost,
    Run,
    RunState,
)

log = logging.getLogger(__name__)

# Runs that never reached Motion: not counted as sent in `/motion list` and the Home tab.
NOT_SENT = (RunState.WAITING, RunState.REJECTED, RunState.RESTARTED)


class ReplyKind(StrEnum):
    IGNORED = "ignored"  # not a job thread, or not addressed to the app
    DUPLICATE = "duplicate"  # a redelivery of a reply already taken
    QUEUED = "queued"
    INVALID = "invalid"  # answered in the thread with what to fix
    REFUSED = "refused"  # a spend control said no, privately to its author
    PREVIEWED = "previewed"  # MOTION_CONFIRM: shown privately, waiting for Start
    STARTED = "started"  # an @mention outside a job thread: a new job, in its thread


ASK_SECONDS = 0.8  # users.info's share of an ack's 3 s (/motion usage); later: no admin, once


@dataclass(frozen=True)
class UsageShown:
    """A usage report, and whether it shows everyone's runs (the caller is a Motion admin)."""

    message: Message
    everyone: bool


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to a thread reply, for the listener's log and for tests."""

    kind: ReplyKind
    run_id: int | None = None


def reply_kind(kind: AskKind, accepted: ReplyKind) -> ReplyKind:
    """A reply's outcome from its ask's; `accepted`: what an accepted ask made of it."""
    return {
        AskKind.ACCEPTED: accepted,
        AskKind.PREVIEWED: ReplyKind.PREVIEWED,
        AskKind.REFUSED: ReplyKind.REFUSED,
        AskKind.DUPLICATE: ReplyKind.DUPLICATE,
    }[kind]


class Intake:
    """The entry points: replies, lists, usage, and the asks behind buttons and forms. Every
    run they ask for goes through `admissions`."""

    def __init__(self, ctx: JobContext, admissions: Admissions) -> None:
        self.ctx = ctx
        self.admissions = admissions

    # ------------------------------------------------------------ the entry points

    def take_reply(
        self, *, event_keys: list[str], team_id: str, channel_id: str, thread_ts: str, ts: str,
        user_id: str, text: str, bot_user_id: str | None, files: tuple[FileAttachment, ...] = (),
        file_problem: str | None = None,
    ) -> ReplyOutcome:  # fmt: skip
        """Turn a human reply in a job thread into a queued followup, recorded before the ack.

        The delivery's keys (event_id, and channel + ts for the same reply arriving as both
        `message` and `app_mention`) are claimed in the same transaction. A refusal or a
        preview is answered privately in the thread. `files`: the reply's Slack files, already
        checked (`bot.jobs.files`); `file_problem`: why they cannot be taken, said in the thread
        like any other problem with the reply."""
        ctx = self.ctx
        job = ctx.store.job_for_thread(channel_id, thread_ts, team_id=team_id)
        if job is None or job.state in (JobState.NEW, JobState.ABANDONED):
            return ReplyOutcome(ReplyKind.IGNORED)
        mentioned = False
        if bot_user_id:
            text, mentioned = strip_mention(text, bot_user_id)
        if ctx.settings.for_team(job.team_id).followup_requires_mention and not mentioned:
            return ReplyOutcome(ReplyKind.IGNORED)
        now = ctx.clock()
        try:
            request = _followup_request(job, text, files, file_problem)
        except UsageError as exc:
            post = NewPost.of(messages.usage_error(str(exc), job.sandbox))
            if not ctx.store.record_reply_error(job.id, event_keys, post, now):
                return ReplyOutcome(ReplyKind.DUPLICATE)
            ctx.background.react(ctx.slack_of(job), channel_id, ts, REACT_FAILED)
            ctx.wake(job.id)
            return ReplyOutcome(ReplyKind.INVALID)
        admission = self.admissions.ask_for_run(
            FollowupAsk(job, channel_id, ts, user_id, request, tuple(event_keys))
        )
        if admission.kind in (AskKind.REFUSED, AskKind.PREVIEWED) and admission.message:
            ctx.tell_privately(channel_id, user_id, admission.message.payload(), thread_ts)
        return ReplyOutcome(reply_kind(admission.kind, ReplyKind.QUEUED), admission.run_id)

    async def take_reply_off_loop(self, **reply: Any) -> ReplyOutcome:
        """`take_reply(**reply)` on the store's workers (`Store.off_loop`): the ack waits for
        its own transaction only, as `ask_for_run_off_loop`."""
        return await self.ctx.store.off_loop(self.take_reply, **reply)

    # ------------------------------------------------------------ usage

    async def usage_answer(self, team_id: str, user_id: str, asker: SlackOut | None) -> Message:
        """`/motion usage`, answered in the ack. The caller's counts and the workspace's
        settings are read at once, while `asker` (the request's client; None: no Slack to
        ask) asks Slack whether the caller is one of its admins (`within` the ack's time, kept
        briefly); only a Slack admin off the admin list has everyone's read after."""
        ctx = self.ctx
        asking = None
        if asker is not None:
            admins = ctx.admins
            asking = asyncio.ensure_future(
                admins.is_slack_admin(team_id, user_id, asker, within=ASK_SECONDS)
            )
        try:
            first = await ctx.store.read_off_loop(self._usage, team_id, user_id, slack_admin=False)
            if first.everyone or asking is None or not await asking:
                return first.message
        finally:
            if asking is not None:
                asking.cancel()
        return (
            await ctx.store.read_off_loop(self._usage, team_id, user_id, slack_admin=True)
        ).message

    def usage_report(self, team_id: str, user_id: str, *, slack_admin: bool = False) -> Message:
        """`/motion usage`: the caller's runs against the limits; the workspace's Motion admins
        (on its admin list, or `slack_admin`: one of its Slack admins) see everyone's."""
        return self._usage(team_id, user_id, slack_admin=slack_admin).message

    def _usage(self, team_id: str, user_id: str, *, slack_admin: bool) -> UsageShown:
        ctx = self.ctx
        everyone = None
        if slack_admin or ctx.settings.for_team(team_id).spend.is_admin(user_id):
            now = ctx.clock()
            everyone = [
                messages.PersonUsage(c.user_id, c.today, c.month)
                for c in ctx.store.everyone_usage(team_id, utc_day(now), utc_month(now))
            ]
        view = self.admissions.usage_view(team_id, user_id)
        said = messages.usage_report(view, everyone=everyone, sandbox=ctx.sandbox_here())
        return UsageShown(said, everyone=everyone is not None)

    # ------------------------------------------------------------ the buttons on results

    def variation_of(
        self, team_id: str, run_id: int, user_id: str, response_url: str | None
    ) -> RunAsk | None:
        """The "New variation" button: a new job in the same channel with the run's whole request, claimed
        once per result ("variation:<run id>") so a second press starts nothing. `team_id`: the
        press's workspace (another's run raises `OtherWorkspace`)."""
        ctx = self.ctx
        found = run_for(ctx.store, team_id, run_id)
        if found is None:
            return None
        run, job = found.run, found.job
        first = ctx.store.first_request(job.id)
        if first is None:
            return None
        request = MotionRequest.from_json(first)
        for earlier in ctx.store.runs(job.id):  # the followups that led to this result
            if 1 < earlier.number <= run.number and earlier.state not in NOT_SENT:
                request = request.merged_with(MotionRequest.from_json(earlier.request))
        return NewJobAsk(
            job.team_id, job.channel_id, user_id, response_url, request,
            event_keys=(f"{VARIATION_KEY}{run_id}",), origin_job_id=job.id,
        )  # fmt: skip

    def refine_of(
        self, team_id: str, job_id: int, user_id: str, view_id: str, request: MotionRequest
    ) -> RunAsk | None:
        """The "Refine" button submitted: a followup as if replied in the thread, claimed by the view's id
        so a replayed submission queues one followup (another workspace's job: `OtherWorkspace`)."""
        job = job_for(self.ctx.store, team_id, job_id)
        if job is None or job.state in (JobState.NEW, JobState.ABANDONED, JobState.STOPPED):
            return None
        return FollowupAsk(
            job, job.channel_id, None, user_id, request, event_keys=(f"refine:{view_id}",)
        )

    def send_job_list(self, *, team_id: str, user_id: str, response_url: str | None) -> None:
        """`/motion list`, answered through response_url once the permalinks are known."""
        if response_url:
            self.ctx.background.run(self._send_job_list(team_id, user_id, response_url))

    async def _send_job_list(self, team_id: str, user_id: str, response_url: str) -> None:
        try:
            listed = await self._job_list(team_id, user_id)
        except DatabaseUnavailable as away:
            log.info("/motion list for %s: %s; asked to try again", user_id, away)
            listed = messages.database_away(self.ctx.sandbox_here(), lookup=True)
        await self.ctx.slack_for(team_id).respond(response_url, listed.payload())

    async def _job_list(self, team_id: str, user_id: str) -> Message:
        ctx = self.ctx
        recent = await ctx.store.read_off_loop(self.recent_with_runs, team_id, user_id, 10, 10)

        async def listing(job: Job, runs: list[Run]) -> messages.JobListing:
            link = (
                await ctx.slack_of(job).permalink(job.channel_id, job.thread_ts)
                if job.thread_ts
                else None
            )
            return messages.JobListing(
                prompt=job.prompt,
                status=job_label(job, runs, ctx.clock()),
                runs=sum(1 for r in runs if r.state not in NOT_SENT),
                permalink=link,
                created_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.created_at)),
                channel_id=job.channel_id,
            )

        listings = await asyncio.gather(*(listing(job, runs) for job, runs in recent.shown))
        return messages.job_list(list(listings), ctx.sandbox_here(), recent.usage)

    def recent_with_runs(self, team_id: str, user_id: str, limit: int, show: int) -> Recent:
        """What `/motion list` and the Home tab read, together, for the store's workers: the
        person's `limit` latest jobs, the first `show` with their visible runs, their usage."""
        store = self.ctx.store
        jobs = store.recent_jobs(team_id, user_id, limit=limit)
        shown = [
            (job, [r for r in store.runs(job.id) if r.state not in HIDDEN_RUN_STATES])
            for job in jobs[:show]
        ]
        return Recent(shown, len(jobs) > show, self.admissions.usage_view(team_id, user_id))


@dataclass(frozen=True)
class Recent:
    shown: list[tuple[Job, list[Run]]]
    more: bool  # more jobs than shown
    usage: messages.UsageView


def _followup_request(
    job: Job, text: str, files: tuple[FileAttachment, ...], file_problem: str | None
) -> MotionRequest:
    """What a reply in the job's thread asks Motion for; UsageError says what to fix."""
    if job.state == JobState.STOPPED:
        raise UsageError(
            messages.STOPPED_TRACKING_REPLY if job.stopped_by else messages.STOPPED_JOB_REPLY
        )
    if file_problem is not None:
        raise UsageError(file_problem)
    if files and not text.strip():
        raise UsageError(messages.FILES_NEED_A_PROMPT)
    request = parse_request(text).with_files(files)
    if request.attachment_count > MAX_ATTACHMENTS:
        raise UsageError(
            messages.too_many_attachments(
                len(request.attachments), len(request.files), MAX_ATTACHMENTS
            )
        )
    return request
