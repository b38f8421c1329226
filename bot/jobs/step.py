"""One look at one job: do whatever it needs now (post its card, send the messages recorded for
it, send a waiting run, poll its active run, edit the card) and say when it next needs a look.

The poller's lease guarantees that one job is advanced by one instance at a time, and the lease
fence refuses this step's writes if another instance took the job over, so nothing here locks.
The common look reads nothing: the poller's claim read the job and its runs, and its quiet
poll is written with the job's release (`Store.hold_quiet_poll`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.jobs.card import Card
from bot.jobs.context import JobContext
from bot.jobs.motion_calls import MotionCalls
from bot.jobs.outbox import Outbox
from bot.jobs.outcomes import Outcomes
from bot.jobs.stopping import Stops
from bot.jobs.uploads import Uploads
from bot.logs import log_context
from bot.slack.out import SlackFailure
from bot.store import Job, JobState, Run, RunState

log = logging.getLogger(__name__)
SENDING_GRACE = 60.0  # longer than any Motion call may take (timeout + slot wait)
MAX_STEPS = 20  # runs settled in one look before yielding to other jobs


@dataclass(frozen=True)
class Look:
    """The job and its runs as a look left them, when it needs the next, and whether any step
    of it met a failure (then the job's failure count stays)."""

    job: Job
    runs: list[Run]
    delay: float | None
    failed: bool


class Stepper:
    def __init__(
        self, ctx: JobContext, card: Card, outbox: Outbox, calls: MotionCalls, outcomes: Outcomes,
        uploads: Uploads,
        stops: Stops,
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.uploads = uploads
        self.stops = stops
        self.card = card
        self.outbox = outbox
        self.calls = calls
        self.outcomes = outcomes

    async def advance(
        self, job_id: int, claimed: tuple[Job, list[Run]] | None = None
    ) -> float | None:
        """Returns seconds until the job next needs a look (None: until something wakes it).
        `claimed`: the job and its runs as the poller's claim just read them."""
        ctx = self.ctx
        job: Job | None
        if claimed is not None and claimed[0].id == job_id:
            job, first_runs = claimed
        else:
            job, first_runs = await ctx.store.read_off_loop(ctx.store.job_and_runs, job_id)
        if job is None or ctx.forgotten(job.team_id):
            return None
        with log_context(job=job_id, team=job.team_id):
            return await self._look(job, first_runs)

    async def _look(self, job: Job, runs: list[Run] | None) -> float | None:
        """`advance` once the job is read: `runs` as read with it (None: read them anew)."""
        ctx, job_id = self.ctx, job.id
        try:
            if job.state == JobState.NEW:
                opened = await self.card.open_thread(job)
                job, runs = await ctx.reread(job_id)
                if job.state == JobState.NEW:
                    return opened.delay
            if job.state == JobState.ABANDONED:
                await self._abandoned(job)
                return None
            if job.pending_posts:
                await self.outbox.flush(job)
                runs = None
            look = await self._work(job, runs)
            job = look.job
            if ctx.forgotten(job.team_id):  # uninstalled while Motion answered: nothing more
                log.info("job %s: its workspace was forgotten; the look ends", job_id)
                return None
            await self.card.refresh(job, look.runs)
            if job.pending_posts:
                await self.outbox.flush((await ctx.reread(job_id))[0])
            again = self.uploads.kick(job)  # after the result: uploads never hold the outbox
        except SlackFailure as exc:
            return ctx.backoff(job_id, f"Slack {exc.code}").delay
        if job.errors and not look.failed:
            await ctx.store.off_loop(ctx.store.clear_errors, job_id)  # a clean look: no failures
        if job.pending_posts:
            # Only now: the card shows the change too.
            await ctx.store.off_loop(ctx.store.clear_pending_posts, job_id)
        if again is not None:
            return again if look.delay is None else min(again, look.delay)
        return look.delay

    async def _abandoned(self, job: Job) -> None:
        """A job with no thread has nothing to look at; what it recorded for Slack (a
        workflow step's failure) is still sent, once."""
        if job.pending_posts:
            await self.outbox.flush(job)
            self.ctx.store.clear_pending_posts(job.id)

    async def _work(self, job: Job, runs: list[Run] | None = None) -> Look:
        """Settle runs until one is busy in Motion or none is left; a settled run frees the job
        for its next followup. `runs`: the job's runs as just read with it, if still current."""
        ctx = self.ctx
        if runs is None:
            runs = await ctx.store.read_off_loop(ctx.store.runs, job.id)
        failed = False
        if job.state == JobState.STOPPED:  # perhaps by a click on another instance
            for run in runs:
                if run.state == RunState.STOPPED:
                    ctx.schedule.forget(run.id)
        for _ in range(MAX_STEPS):
            active = next((r for r in runs if r.active), None)
            if active is not None:
                if active.state == RunState.SENDING:
                    if self.calls.is_sending(active.id):  # its answer is still on its way here
                        return Look(job, runs, SENDING_GRACE, failed)
                    if self.calls.has_answer(active.id):  # it came while the database was away
                        step = await self.calls.record_answer(job, active)
                        failed |= step.failed
                        job, runs = await ctx.reread(job.id)
                        if any(r.id == active.id and r.active for r in runs):
                            return Look(job, runs, step.delay, failed)
                        continue
                    # Sent by a call that no longer runs anywhere: cancelled here, a failed
                    # write after it, or a process that died or lost the lease (this one holds
                    # it now). Settle it as a restart would; never send it again blindly.
                    self.outcomes.settle_interrupted(job, active)
                    job, runs = await ctx.reread(job.id)
                    continue
                with log_context(run=active.number):
                    step = await self.calls.poll(job, active)
                failed |= step.failed
                if not step.changed:  # the common case: still going, nothing to read again
                    if step.run is not None:
                        runs = [step.run if r.id == active.id else r for r in runs]
                    job, delay = self.stops.check_stuck(job, step.run or active, step.delay)
                    return Look(job, runs, delay, failed)
                job, runs = await ctx.reread(job.id)
                if job.pending_posts:
                    await self.outbox.flush(job)
                still = next((r for r in runs if r.id == active.id and r.active), None)
                if still is not None:
                    job, delay = self.stops.check_stuck(job, still, step.delay)
                    return Look(job, runs, delay, failed)
                continue
            waiting = next((r for r in runs if r.state == RunState.WAITING), None)
            if waiting is None or job.state != JobState.OPEN:
                return Look(job, runs, None, failed)
            if ctx.stopping:  # no new billable call in the last seconds before exit
                return Look(job, runs, 0.0, failed)
            with log_context(run=waiting.number):
                step = await self.calls.send(job, waiting)
            failed |= step.failed
            job, runs = await ctx.reread(job.id)
            if any(r.id == waiting.id and (r.active or r.state == RunState.WAITING) for r in runs):
                return Look(job, runs, step.delay, failed)
        return Look(job, runs, 0.0, failed)  # still more to do: look again at once
