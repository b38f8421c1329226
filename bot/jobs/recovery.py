"""The start of a process, before any work: what a dead process left half done is settled, the
poll schedule is taught what the store remembers, and every job is resumed."""

from __future__ import annotations

from bot.jobs.context import JobContext
from bot.jobs.motion_calls import bucket
from bot.jobs.outcomes import Outcomes
from bot.jobs.workflow_ends import WorkflowEnds
from bot.store import LeaseLost, lease_fence

EVENT_MEMORY_SECONDS = 7 * 86400  # Slack retries for minutes; a week is generous


class Recovery:
    def __init__(self, ctx: JobContext, outcomes: Outcomes, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.outcomes = outcomes
        self.ends = ends

    def recover(self) -> int:
        """Settle calls a dead process left in flight, then resume all; returns how many jobs
        were resumed.

        A create whose answer never came cannot be checked (Motion has no list endpoint), so
        its thread is told and offered a button; a followup can be checked against the job's
        status, so it is verified by polling before anything is said.
        """
        ctx = self.ctx
        now = ctx.clock()
        ctx.store.release_predecessors()  # this instance's own leases from before a kill
        self._settle_interrupted(now)
        self.ends.resend()  # workflow steps refused before a crash let their answer out
        ctx.store.forget_events_before(now - EVENT_MEMORY_SECONDS)
        ctx.store.forget_previews_before(now - EVENT_MEMORY_SECONDS)
        for duration, seconds in ctx.store.generation_times():
            ctx.schedule.learn(duration, seconds)  # render times too, under their bucket
        for run in ctx.store.generating_runs():  # a restart keeps what the runs going tell
            assert run.sent_at is not None
            ctx.schedule.going(run.id, bucket(run), now - run.sent_at)
        return ctx.store.resume_all(now)

    def _settle_interrupted(self, now: float) -> None:
        ctx = self.ctx
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
