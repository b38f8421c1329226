"""The job card: posted once to open the job's thread, then edited in place as the job moves."""

from __future__ import annotations

import hashlib
import json
import logging

from bot.jobs.context import JobContext, Step
from bot.jobs.workflow_ends import WorkflowEnds
from bot.motion import MotionRequest, MotionStatus
from bot.slack import messages
from bot.slack.messages import Message, RunLine
from bot.slack.out import NOT_INSTALLED, SlackFailure, is_direct_message
from bot.store import HIDDEN_RUN_STATES, Job, JobState, NewPost, Run, RunState

log = logging.getLogger(__name__)
CARD_MIN_INTERVAL = 15.0  # seconds between progress-only edits of one card
# The card says why when the job's latest run ended in one of these.
_WITH_REASON = {RunState.REJECTED, RunState.FAILED, RunState.UNKNOWN}


class Card:
    """`ends`: a Workflow Builder step waiting for the job fails when its card cannot be posted."""

    def __init__(self, ctx: JobContext, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.ends = ends
        # Public channels this process joined (Slack lets an app join no other kind).
        self._joined: set[str] = set()

    async def open_thread(self, job: Job) -> Step:
        """Post the card (joining a public channel first); the job's thread is the card's."""
        ctx, channel = self.ctx, job.channel_id
        slack = ctx.slack_of(job)
        if channel not in self._joined:
            try:
                if (await slack.join(channel)).member:
                    self._joined.add(channel)
            except SlackFailure as exc:
                if not exc.permanent:
                    return ctx.backoff(job.id, f"conversations.join: {exc.code}")
                # Joining is refused (an admin setting, say): posting the card decides.
        parent = job.parent_ts  # an @mention's thread: the card is a reply there
        owner = ctx.store.job_for_thread(channel, parent, team_id=job.team_id) if parent else None
        if owner is not None and owner.id != job.id:  # two mentions in one thread: first wins
            ctx.store.abandon_job(job.id, ctx.clock())
            said = messages.usage_error(messages.THREAD_TAKEN, job.sandbox).payload()
            await slack.tell_privately(channel, job.requester, said, thread_ts=parent)
            return Step(None)
        runs = await ctx.store.read_off_loop(ctx.store.runs, job.id)
        card = self.build(job, runs)
        key = f"card:{job.id}"
        try:
            ts = None
            if job.card_sent_at is not None:  # an earlier attempt may have reached Slack
                ts = await slack.find_post(channel, parent, key, since=job.created_at)
            if ts is None:
                await ctx.store.off_loop(ctx.store.record_card_sending, job.id, ctx.clock())
                ts = await slack.post(
                    channel, card.payload(), thread_ts=parent, key=key, kind=card.kind
                )
        except SlackFailure as exc:
            if not exc.permanent:
                return ctx.backoff(job.id, f"posting the card: {exc.code}")
            self._joined.discard(channel)
            log.info("job %s: cannot post in %s (%s): invite hint", job.id, channel, exc.code)
            ctx.store.abandon_job(job.id, ctx.clock(), self.ends.unusable(job))
            if job.response_url and exc.code != NOT_INSTALLED:
                hint = messages.invite_hint(
                    channel_is_dm=is_direct_message(channel), sandbox=job.sandbox
                )
                await slack.respond(job.response_url, hint.payload())
            return Step(None)
        origin_posts: list[NewPost] = []
        if job.origin_job_id:
            link = await slack.permalink(channel, ts)
            origin_posts.append(
                NewPost.of(messages.new_job_link(permalink=link, sandbox=job.sandbox))
            )
        await ctx.store.off_loop(
            ctx.store.record_card, job.id, parent or ts, channel, job_phase(job, runs),
            digest(card), ctx.clock(), origin_posts, card_ts=ts if parent else None,
            public=channel in self._joined,
        )  # fmt: skip
        if job.origin_job_id:
            ctx.wake(job.origin_job_id)
        return Step(None)

    def build(self, job: Job, runs: list[Run]) -> Message:
        visible = [r for r in runs if r.state not in HIDDEN_RUN_STATES]
        lines = [
            RunLine(
                r.number,
                r.state,
                messages.status_label(run_phase(r)),
                self.ctx.download_link(job, r.number, r.download_url) if r.download_url else None,
            )
            for r in visible
        ]
        first = MotionRequest.from_json(runs[0].request) if runs else MotionRequest(job.prompt)
        return messages.job_card(
            requester=job.requester,
            prompt=job.prompt,
            status=job_label(job, visible, self.ctx.clock()),
            runs=lines,
            sandbox=job.sandbox,
            options=options_text(first),
            stop_job_id=job.id if is_followed(job, runs) else None,
            stopped_by=job.stopped_by if job.state == JobState.STOPPED else None,
        )

    async def refresh(self, job: Job, runs: list[Run]) -> None:
        """Edit the card when its phase changes; progress-only edits (elapsed time) are rationed
        per card here and across the workspace by Slack's budget for chat.update."""
        if not job.thread_ts:
            return
        ctx, now = self.ctx, self.ctx.clock()
        slack = ctx.slack_of(job)
        phase = edit_phase(job, runs)
        if job.card_phase == phase:
            if job.card_updated_at and now - job.card_updated_at < CARD_MIN_INTERVAL:
                return
            if not slack.may_edit_progress(now):
                return
        card = self.build(job, runs)
        new_digest = digest(card)
        if new_digest == job.card_digest and phase == job.card_phase:
            return
        # The look's held quiet poll is written first, fenced: an instance whose lease was
        # taken over stops here (LeaseLost) instead of editing the card with what it saw.
        await ctx.store.off_loop(ctx.store.write_held_polls)
        try:
            await slack.update(job.channel_id, job.card_ts or job.thread_ts, card.payload())
        except SlackFailure as exc:
            if not exc.permanent:
                raise  # the job backs off and edits the card at its next look
            log.warning("job %s: the card cannot be edited (%s)", job.id, exc.code)
        await ctx.store.off_loop(ctx.store.record_card_update, job.id, phase, new_digest, now)


def is_followed(job: Job, runs: list[Run]) -> bool:
    """The job is being followed (so "Stop tracking" means something): open, with a run
    in Motion or waiting to be sent."""
    return job.state == JobState.OPEN and any(r.active or r.state == RunState.WAITING for r in runs)


def run_phase(run: Run) -> str:
    """The label key for one run, from what is known of it."""
    if run.state in (RunState.RUNNING, RunState.VERIFYING):
        if not run.seen_new:
            return "queued"
        if run.motion_status == MotionStatus.COMPLETED:
            return "rendering"
        return run.motion_status or "queued"
    if run.state == RunState.SENDING:
        return "queued"
    return str(run.state)


def job_phase(job: Job, runs: list[Run]) -> str:
    if job.state == JobState.STOPPED:
        return "stopped"
    current = [r for r in runs if r.state not in HIDDEN_RUN_STATES]
    if not current:
        return "new"
    run = next((r for r in current if r.active), None) or current[-1]
    if run.state == RunState.WAITING:
        return "queued" if job.motion_job_id else "new"
    return run_phase(run)


def edit_phase(job: Job, runs: list[Run]) -> str:
    """What decides whether an edit is more than progress: the phase and the run counts."""
    waiting = sum(1 for r in runs if r.state == RunState.WAITING)
    return f"{job_phase(job, runs)}:{len(runs)}:{waiting}"


def job_label(job: Job, runs: list[Run], now: float) -> str:
    phase = job_phase(job, runs)
    active = next((r for r in runs if r.active), None)
    elapsed = now - active.sent_at if active and active.sent_at else None
    label = messages.status_label(phase, elapsed)
    visible = [r for r in runs if r.state not in HIDDEN_RUN_STATES]
    last = visible[-1] if visible else None
    if (
        last is not None
        and last.error
        and (last.state in _WITH_REASON or (job.state == JobState.STOPPED and not job.stopped_by))
        and active is None
    ):
        label += f" — {messages.escape(messages.shorten(last.error, 200))}"
    waiting = sum(1 for r in runs if r.state == RunState.WAITING)
    if waiting and phase != "new":
        label += f" · {waiting} followup{'s' if waiting != 1 else ''} waiting"
    return label


def options_text(request: MotionRequest) -> str:
    parts = []
    if request.aspect:
        parts.append(f"aspect {request.aspect}")
    if request.duration:
        parts.append(f"duration {request.duration}")
    if request.style_url:
        parts.append("style reference")
    if request.attachment_count:
        count = request.attachment_count
        parts.append(f"{count} attachment{'s' if count != 1 else ''}")
    return " · ".join(parts)


def digest(card: Message) -> str:
    return hashlib.sha256(json.dumps(card.payload(), sort_keys=True).encode()).hexdigest()[:16]
