"""Stuck runs and "Stop tracking".

A run not finished STUCK_AFTER_MINUTES after it was sent gets one notice in its thread with
"Keep waiting" and "Stop tracking". The timer is the run's own row (`sent_at`, `stuck_from`,
the notice counts), read by the look that polls the run anyway: no timer in memory, nothing
lost at a restart, and no query of its own until a notice is due. The notice is claimed with
its post in one transaction, so it is posted once per run per period, across crashes and
instances.

"Stop tracking" (on the card while the job is followed, and on the notice) is for the
requester and MOTION_ADMINS. It settles the job in one transaction (the store's
`stop_tracking`); a look already under way on another instance finds its runs settled, and
every write it would make on them is conditional on their state, so it neither revives the job
nor announces a result. Motion's API has no cancel: the card and the thread say that Motion may
still finish the video in its web app.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

from bot.jobs.bounds import job_for, run_for
from bot.jobs.context import REACT_FAILED, JobContext
from bot.jobs.workflow_ends import WorkflowEnds
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.out import SlackFailure, SlackOut
from bot.store import Job, NewPost, Run, StopKind
from bot.store.offloop import on_loop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopValue:
    """A "Stop tracking" button's value: the job, and the run when it is on a stuck notice."""

    job_id: int
    run_id: int | None = None

    @classmethod
    def parse(cls, value: str) -> StopValue | None:
        parts = value.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) not in (1, 2):
            return None
        return cls(int(parts[0]), int(parts[1]) if len(parts) == 2 else None)


@dataclass(frozen=True)
class StopTried:
    """What a "Stop tracking" click was answered: `said`, to the clicker alone, if anything;
    `refused`: someone else's job, and the clicker is on no admin list (a Slack admin may
    still stop it)."""

    said: Message | None
    refused: bool = False


def stuck_due_at(run: Run, period: float) -> float | None:
    """When the run's next stuck notice is due; None while one is unanswered, or the run is
    not in Motion (not sent yet, or settled)."""
    if not run.active or run.sent_at is None or run.stuck_notices != run.stuck_waited:
        return None
    start = run.stuck_from if run.stuck_from is not None else run.sent_at
    return start + period


class Stops:
    """`ends`: a Workflow Builder step waiting for the job fails when tracking is stopped."""

    def __init__(self, ctx: JobContext, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.ends = ends

    # ------------------------------------------------------------ the stuck notice

    def check_stuck(self, job: Job, run: Run, delay: float | None) -> tuple[Job, float | None]:
        """After a look at a run still going: record its notice if due (the job is read again:
        it now has a post to send), else make sure the next look comes no later than the
        notice is due. Reads nothing when no notice is due."""
        ctx = self.ctx
        period = ctx.stuck_after
        due = stuck_due_at(run, period)
        if due is None:
            return job, delay
        now = ctx.clock()
        if now < due:
            return job, min(delay if delay is not None else math.inf, due - now)
        assert run.sent_at is not None
        notice = messages.stuck_notice(
            run_number=run.number, elapsed=now - run.sent_at, period=period, run_id=run.id,
            notice=run.stuck_notices + 1, job_id=job.id, sandbox=job.sandbox,
        )  # fmt: skip
        if ctx.store.record_stuck_notice(
            run.id, job.id, run.stuck_notices, NewPost.of(notice), now
        ):
            log.info("job %s run %s: stuck notice %s", job.id, run.number, run.stuck_notices + 1)
            return ctx.job(job.id), delay
        return job, delay

    def keep_waiting(
        self, team_id: str, value: str, user_id: str, channel_id: str | None,
        message_ts: str | None,
    ) -> Message | None:  # fmt: skip
        """ "Keep waiting": the next notice comes after as long again, from now. The notice is
        rewritten to say who chose it, without its buttons; a replay changes nothing (the
        clicker is told privately)."""
        ctx = self.ctx
        run_text, _, notice_text = value.partition(":")
        if not (run_text.isdigit() and notice_text.isdigit()):
            return messages.already_done(messages.STUCK_ANSWERED, ctx.sandbox_here())
        now = ctx.clock()
        # Read before the choice is recorded: nothing after it may fail for want of the database.
        found = run_for(ctx.store, team_id, int(run_text))  # another workspace's: refused
        run = found.run if found else None
        job_id = ctx.store.keep_waiting(int(run_text), int(notice_text), now) if run else None
        if job_id is None or run is None:
            return messages.already_done(messages.STUCK_ANSWERED, ctx.sandbox_here())
        log.info("job %s run %s: %s chose to keep waiting", job_id, run.number, user_id)
        self._rewrite_notice(run, user_id, channel_id, message_ts, now, kept_waiting=True)
        return None

    # ------------------------------------------------------------ Stop tracking

    async def stop_clicked(
        self, team_id: str, value: str, user_id: str, channel_id: str | None,
        message_ts: str | None, asker: SlackOut,
    ) -> Message | None:  # fmt: skip
        """ "Stop tracking" clicked (after the ack): `stop_tracking` on the store's workers.
        Someone who is neither the requester nor on the admin list may still be one of the
        workspace's Slack admins: `users.info` (with `asker`, the request's client) is asked
        only then, and the stop tried again as theirs."""
        store, args = self.ctx.store, (team_id, value, user_id, channel_id, message_ts)
        tried = await store.off_loop(self._stop, *args, slack_admin=False)
        if not tried.refused:
            return tried.said
        admins = self.ctx.admins
        if not await admins.is_slack_admin(team_id, user_id, asker):
            return tried.said
        return (await store.off_loop(self._stop, *args, slack_admin=True)).said

    def stop_tracking(
        self, team_id: str, value: str, user_id: str, channel_id: str | None,
        message_ts: str | None, *, slack_admin: bool = False,
    ) -> Message | None:  # fmt: skip
        """Stop following the job, once, for its requester or an admin (on the admin list, or
        `slack_admin`: Slack said so); anyone else is told privately and nothing changes.
        Returns what the clicker alone is told, if anything."""
        return self._stop(
            team_id, value, user_id, channel_id, message_ts, slack_admin=slack_admin
        ).said

    def _stop(
        self, team_id: str, value: str, user_id: str, channel_id: str | None,
        message_ts: str | None, *, slack_admin: bool,
    ) -> StopTried:  # fmt: skip
        ctx = self.ctx
        stop = StopValue.parse(value)
        job = job_for(ctx.store, team_id, stop.job_id) if stop else None  # another's: refused
        if stop is None or job is None:
            return StopTried(messages.already_done(messages.STOP_GONE, ctx.sandbox_here()))
        admin = slack_admin or ctx.settings.for_team(job.team_id).spend.is_admin(user_id)
        if user_id != job.requester and not admin:
            said = messages.stop_not_allowed(requester=job.requester, sandbox=ctx.sandbox_here())
            return StopTried(said, refused=True)
        return StopTried(self._stop_job(job, stop, user_id, channel_id, message_ts))

    def _stop_job(
        self, job: Job, stop: StopValue, user_id: str, channel_id: str | None,
        message_ts: str | None,
    ) -> Message | None:  # fmt: skip
        """The stop itself, for someone who may: once; a repeat is answered privately."""
        ctx = self.ctx
        now = ctx.clock()
        # Read before the stop is recorded: nothing after it may fail for want of the database.
        run = ctx.store.run(stop.run_id) if stop.run_id is not None else None

        def announce(dropped: int) -> NewPost:
            said = messages.tracking_stopped(user_id=user_id, dropped=dropped, sandbox=job.sandbox)
            return NewPost.of(said)

        step = self.ends.stopped(job, messages.STEP_STOPPED_TRACKING)
        outcome = ctx.store.stop_tracking(job.id, user_id, announce, now, also=step)
        if outcome.kind == StopKind.ALREADY:
            return messages.already_done(messages.STOP_ALREADY, ctx.sandbox_here())
        if outcome.kind == StopKind.NOTHING:
            return messages.already_done(messages.STOP_NOTHING, ctx.sandbox_here())
        if outcome.kind == StopKind.GONE:
            return messages.already_done(messages.STOP_GONE, ctx.sandbox_here())
        log.info("job %s: %s stopped tracking it", job.id, user_id)
        on_loop(lambda: self._forget(outcome.run_ids))  # the schedule is the loop's own
        for reply_channel, reply_ts in outcome.dropped:
            ctx.background.react(ctx.slack_of(job), reply_channel, reply_ts, REACT_FAILED)
        ctx.wake(job.id)  # a look posts the thread's message and edits the card
        if (
            run is not None
            and run.job_id == job.id
            and message_ts not in (job.thread_ts, job.card_ts)
        ):
            self._rewrite_notice(run, user_id, channel_id, message_ts, now, kept_waiting=False)
        return None

    def _forget(self, run_ids: Iterable[int]) -> None:
        for run_id in run_ids:
            self.ctx.schedule.forget(run_id)

    def _rewrite_notice(
        self, run: Run, user_id: str, channel_id: str | None, message_ts: str | None,
        now: float, *, kept_waiting: bool,
    ) -> None:  # fmt: skip
        """The answered notice says who chose what and loses its buttons. Only the click that
        made the choice gets here, so it is edited once; a failed edit leaves the buttons,
        whose next press is answered "already answered"."""
        if not channel_id or not message_ts:
            return
        ctx = self.ctx
        answered = messages.stuck_answered(
            run_number=run.number, elapsed=now - (run.sent_at or now), user_id=user_id,
            kept_waiting=kept_waiting, period=ctx.stuck_after, sandbox=ctx.sandbox_here(),
        )  # fmt: skip
        slack = ctx.slack_here()  # the notice is in the clicker's workspace

        async def edit() -> None:
            try:
                await slack.update(channel_id, message_ts, answered.payload())
            except SlackFailure as exc:  # the choice is recorded; only the words are late
                log.warning("run %s: the stuck notice could not be edited (%s)", run.id, exc.code)

        ctx.background.run(edit())
