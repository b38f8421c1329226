"""The calls to Motion a job makes (send a run, look at its status) and what each answer means
for the job. Every write is recorded as "sending" before it goes out, so a crash mid-call is
never re-sent blindly: create and followups cost credits and carry no idempotency key.

Motion's answer to a write is kept here until it is recorded: when the database is away at
that moment, the job's next look records it (`record_answer`) instead of settling the run as
one whose answer was lost."""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from bot.jobs.context import REACT_FAILED, REACT_SENT, JobContext, Step
from bot.jobs.files import signed_again
from bot.jobs.outcomes import Outcomes
from bot.motion import (
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    JobStatus,
    MotionError,
    MotionRequest,
    MotionStatus,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
)
from bot.schedule import ANY, RENDER, generation_seconds
from bot.slack import messages
from bot.store import DatabaseUnavailable, Job, NewPost, Run, RunKind, RunState

log = logging.getLogger(__name__)
MAX_SEND_ATTEMPTS = 6  # Motion unreachable before sending: retried with backoff, then reported
VERIFY_LOOKS = 40  # look this many initial waits (2 min by default) for a lost followup
RENDERS_REMEMBERED = 10_000  # runs whose render time was learned, remembered at most


@dataclass(frozen=True)
class Baseline:
    """The job as Motion showed it just before a followup: what tells the new run's answers
    from the previous run's, which Motion keeps showing for a while."""

    completed_at: str | None
    url: str | None


class MotionCalls:
    def __init__(self, ctx: JobContext, outcomes: Outcomes) -> None:
        self.ctx = ctx
        self.outcomes = outcomes
        # Runs whose Motion write this process has in flight. A run recorded as sending that
        # is not here was sent by a process that died or lost the job's lease: its answer is
        # not coming.
        self._sending: set[int] = set()
        # Motion's answers (a job id, or the error) to writes whose recording failed because
        # the database was away: recorded by the job's next look.
        self._answers: dict[int, str | MotionError] = {}
        # Runs whose render time was learned (a look retried after a failed post must not
        # teach it twice); the oldest forgotten first.
        self._renders_learned: OrderedDict[int, None] = OrderedDict()

    def is_sending(self, run_id: int) -> bool:
        """This process has the run's create or followup out now (its answer is on its way)."""
        return run_id in self._sending

    def has_answer(self, run_id: int) -> bool:
        """Motion answered the run's write here, and the answer is still to be recorded."""
        return run_id in self._answers

    async def record_answer(self, job: Job, run: Run) -> Step:
        """Record the answer `has_answer` holds for this run (still "sending" in the store)."""
        return await self._answered(job, run, self._answers.pop(run.id))

    # ------------------------------------------------------------ sending a run

    async def send(self, job: Job, run: Run) -> Step:
        """Send a waiting run (a create, or a followup once the job is ready for it)."""
        ctx = self.ctx
        if ctx.motion.writes_full():  # slow writes: do not hold a poller task while waiting
            return Step(ctx.schedule.initial / 3, changed=False)
        followup = run.kind == RunKind.FOLLOWUP
        baseline = Baseline(None, None)
        if followup:
            if job.motion_job_id is None:
                nothing = messages.nothing_to_refine(sandbox=job.sandbox)
                self.outcomes.reject(job, run, nothing, messages.NEVER_STARTED)
                return Step(None)
            ready = await self._ready_for_followup(job, run)
            if isinstance(ready, Step):
                return ready
            if ctx.stopping:
                return Step(0.0)
            baseline = ready
        if not await ctx.store.off_loop(
            ctx.store.mark_sending, run.id, baseline_completed_at=baseline.completed_at,
            baseline_url=baseline.url, now=ctx.clock(),
        ):  # fmt: skip
            return Step(0.0)  # no longer waiting (its job was stopped): nothing is sent
        request = MotionRequest.from_json(run.request)
        if ctx.files is not None:  # file links live 24 h: sign them as the run goes out
            request = signed_again(request, ctx.files.links)
        self._sending.add(run.id)
        answer: str | MotionError
        try:
            route = await ctx.routes.for_job(job, fresh=True)  # a write uses the key as it is now
            if followup:
                assert job.motion_job_id is not None
                answer = await ctx.motion.followup(job.motion_job_id, request, route=route)
            else:
                answer = await ctx.motion.create(request, route=route)
        except MotionError as exc:
            answer = exc
        finally:
            self._sending.discard(run.id)
        return await self._answered(job, run, answer)

    async def _answered(self, job: Job, run: Run, answer: str | MotionError) -> Step:
        """Record Motion's answer to the run's write; kept for the next look if the database
        is away (never sent again: the run stays "sending" in the store meanwhile)."""
        ctx = self.ctx
        try:
            if isinstance(answer, MotionError):
                return self._not_sent(job, run, answer)
            taken = await ctx.store.off_loop(
                ctx.store.mark_running, run.id, job.id, answer, ctx.clock()
            )
        except DatabaseUnavailable:
            self._answers[run.id] = answer
            raise
        if taken:  # else its job was stopped while the call was out
            ctx.react(job, run, REACT_SENT)
        return Step(ctx.schedule.initial)

    def _not_sent(self, job: Job, run: Run, exc: MotionError) -> Step:
        """A write that failed: decided first by whether it may have taken effect."""
        if exc.retry is Retry.UNSAFE:  # the answer was lost: Motion may have started it
            if run.kind == RunKind.FOLLOWUP:
                # %r: Motion's words may hold newlines, which would forge log lines.
                log.warning("job %s run %s: answer lost (%r)", job.id, run.number, exc.message)
                self.ctx.store.mark_verifying(run.id)  # the job's status will tell
                return Step(self.ctx.schedule.initial)
            self.outcomes.create_unknown(job, run, exc.message)  # (which logs it)
            return Step(None)
        if exc.retry is Retry.LATER:  # nothing reached Motion, or it said "not now"
            return self._send_later(job, run, exc)
        if isinstance(exc, Conflict):
            if exc.job_status == MotionStatus.FAILED:
                offer = messages.followup_on_failed(sandbox=job.sandbox, value=str(run.id))
                self.outcomes.refused(job, run, exc, offer)
                return Step(None)
            # The job moved on between our look and the call: the followup waits its turn.
            return self._send_later(job, run, exc)
        if isinstance(exc, InsufficientCredits):
            self.outcomes.out_of_credits(job, run, exc, started=False)
        elif isinstance(exc, AuthenticationError | NotFound):
            self.outcomes.stop(job, run, exc)
        elif isinstance(exc, ServerError):  # Motion said it did not start it; no auto-resend
            retry = messages.motion_server_error(
                run_number=run.number, error=exc.message, run_id=run.id, sandbox=job.sandbox
            )
            self.outcomes.refused(job, run, exc, retry)
        else:  # 400, and anything else Motion refused outright
            details = exc.details if isinstance(exc, BadRequest) else []
            refused = messages.bad_request(
                run_number=run.number, details=details, message=exc.message, sandbox=job.sandbox
            )
            self.outcomes.refused(job, run, exc, refused)
        return Step(None)

    def _send_later(self, job: Job, run: Run, exc: MotionError) -> Step:
        """Nothing started: put the run back in the queue; retry with backoff, then report."""
        store = self.ctx.store
        store.mark_waiting(run.id)
        if store.add_send_attempt(run.id) >= MAX_SEND_ATTEMPTS:
            unreachable = messages.motion_unreachable(
                run_number=run.number, error=exc.message, run_id=run.id, sandbox=job.sandbox
            )
            self.outcomes.refused(job, run, exc, unreachable)
            return Step(None)
        return self.ctx.backoff(job.id, f"Motion unavailable ({exc.message!r})", _retry_after(exc))

    async def _ready_for_followup(self, job: Job, run: Run) -> Baseline | Step:
        """Look at the job right before a followup: Motion takes followups only on a completed
        job, and the previous run's video must be ready (announced) first."""
        ctx = self.ctx
        assert job.motion_job_id is not None
        try:
            status = await self.status_of(job)
        except MotionError as exc:
            if isinstance(exc, AuthenticationError | NotFound):
                self.outcomes.stop(job, run, exc)
                return Step(None)
            if isinstance(exc, InsufficientCredits):
                self.outcomes.out_of_credits(job, run, exc, started=False)
                return Step(None)
            return ctx.backoff(
                job.id, f"status before a followup: {exc.message!r}", _retry_after(exc)
            )
        ctx.store.record_poll(job.id, None, motion_status=status.status, now=ctx.clock())
        if status.status == MotionStatus.FAILED or status.render_failed or status.download_url:
            return Baseline(status.completed_at, status.download_url)  # failed: Motion says 409
        # Still running (someone used the web app) or rendering: the followup waits its turn.
        rendering = status.status == MotionStatus.COMPLETED
        return Step(
            ctx.schedule.next_delay(elapsed=0.0, status=status.status, rendering=rendering),
            changed=False,
        )

    # ------------------------------------------------------------ following a run

    async def status_of(self, job: Job) -> JobStatus:
        """Motion's status of the job, asked with its workspace's key (`MotionRoutes`); a key
        refused after it was replaced meanwhile is tried once more with the new one."""
        ctx = self.ctx
        assert job.motion_job_id is not None
        route = await ctx.routes.for_job(job)
        try:
            return await ctx.motion.status(job.motion_job_id, route=route)
        except AuthenticationError:
            fresh = await ctx.routes.for_job(job, fresh=True)
            if fresh == route:
                raise
            return await ctx.motion.status(job.motion_job_id, route=fresh)

    async def poll(self, job: Job, run: Run) -> Step:
        """One status call for the job's active run, and what it means."""
        ctx, outcomes = self.ctx, self.outcomes
        assert job.motion_job_id is not None
        try:
            status = await self.status_of(job)
        except MotionError as exc:
            if isinstance(exc, AuthenticationError | NotFound):
                outcomes.stop(job, run, exc)
                return Step(None)
            if isinstance(exc, InsufficientCredits):  # Motion can run out mid-generation
                outcomes.out_of_credits(job, run, exc, started=True)
                return Step(None)
            return ctx.backoff(job.id, f"status call: {exc.message!r}", _retry_after(exc))
        now = ctx.clock()
        elapsed = now - (run.sent_at if run.sent_at is not None else now)
        if not (run.seen_new or is_new_run(run, status)):
            return self._still_previous(job, run, status, elapsed)
        quiet = await self._record_look(job, run, status, now)
        seen = dataclasses.replace(
            run, seen_new=True, motion_status=status.status, last_poll_at=now
        )
        return await self._after_look(job, seen, status, elapsed, quiet)

    async def _record_look(self, job: Job, run: Run, status: JobStatus, now: float) -> bool:
        """Record what a status of this run says, with what the thread must be told; returns
        whether the look was quiet (nothing to tell: the store's rows need no new read)."""
        ctx = self.ctx
        posts: list[NewPost] = []
        if run.state == RunState.VERIFYING:
            posts.append(
                NewPost.of(messages.lost_answer_found(run_number=run.number, sandbox=job.sandbox))
            )
            ctx.react(job, run, REACT_SENT)
        awaiting = MotionStatus.AWAITING_USER_INPUT
        if status.status == awaiting and run.motion_status != awaiting:
            posts.append(
                NewPost.of(messages.awaiting_input(run_number=run.number, sandbox=job.sandbox))
            )
        if status.status == MotionStatus.COMPLETED and run.motion_status != MotionStatus.COMPLETED:
            await self._learn(run, status, now)
        if status.download_url and status.status == MotionStatus.COMPLETED:
            await self._learn_render(run, status, now)
        quiet = not posts and run.state != RunState.VERIFYING
        if quiet and not job.errors:  # the common look: written with the job's release
            if not ctx.store.hold_quiet_poll(job.id, run.id, motion_status=status.status, now=now):
                await ctx.store.off_loop(
                    ctx.store.record_quiet_poll, job.id, run.id, motion_status=status.status,
                    now=now,
                )  # fmt: skip
        else:
            ctx.store.record_poll(
                job.id, run.id, motion_status=status.status, now=now, posts=posts,
                run_state=RunState.RUNNING if run.state == RunState.VERIFYING else None,
            )  # fmt: skip
        return quiet

    async def _after_look(
        self, job: Job, seen: Run, status: JobStatus, elapsed: float, quiet: bool
    ) -> Step:
        """The run ends (failed, or its video ready) or is looked at again, and when.
        `seen`: the run as the look left it."""
        ctx, outcomes = self.ctx, self.outcomes
        if status.status == MotionStatus.FAILED:
            log.info("job %s run %s: Motion says it failed: %r", job.id, seen.number, status.error)
            failed = messages.job_failed(
                run_number=seen.number, error=status.error, sandbox=job.sandbox
            )
            reason = status.error or messages.NO_REASON
            outcomes.finish(job, seen, RunState.FAILED, failed, error=reason, react=REACT_FAILED)
            return Step(None)
        if status.status == MotionStatus.COMPLETED:
            if status.render_failed:
                failed = messages.render_failed(run_number=seen.number, sandbox=job.sandbox)
                outcomes.finish(job, seen, RunState.FAILED, failed, error=messages.RENDER_FAILED)
                return Step(None)
            if status.download_url:
                await outcomes.result(job, seen, status)
                return Step(None)
            rendering = ctx.schedule.next_delay(
                elapsed=elapsed, status=status.status, rendering=True, key=seen.id,
                rendered=_rendered_for(status, seen, elapsed),
            )  # fmt: skip
            return Step(rendering, changed=not quiet, run=seen)
        delay = ctx.schedule.next_delay(
            elapsed=elapsed, status=status.status, rendering=False, bucket=bucket(seen),
            key=seen.id,
        )  # fmt: skip
        return Step(delay, changed=not quiet, run=seen)

    def _still_previous(self, job: Job, run: Run, status: JobStatus, elapsed: float) -> Step:
        """Motion still shows the previous run (it lags after a followup): never settle on it."""
        ctx = self.ctx
        ctx.store.record_poll(job.id, None, motion_status=status.status, now=ctx.clock())
        looked_long = elapsed >= VERIFY_LOOKS * ctx.schedule.initial
        if run.state == RunState.VERIFYING and looked_long:
            unknown = messages.outcome_unknown(
                run_number=run.number, followup=True, run_id=run.id, sandbox=job.sandbox
            )
            self.outcomes.finish(job, run, RunState.UNKNOWN, unknown, error=messages.ANSWER_LOST)
            return Step(None)
        if not looked_long:
            return Step(ctx.schedule.initial, changed=False)
        # Accepted, yet still shown as the previous run for long: keep looking, less often.
        delay = ctx.schedule.next_delay(elapsed=elapsed, status="running", rendering=False)
        return Step(delay, changed=False)

    async def _learn(self, run: Run, status: JobStatus, now: float) -> None:
        """Teach the poll schedule how long this run took to generate."""
        sent_at = run.sent_at if run.sent_at is not None else now
        seconds = generation_seconds(
            completed_at=_epoch(status.completed_at),
            sent_at=sent_at,
            previous_look=run.last_poll_at or sent_at,
            now=now,
        )
        store = self.ctx.store
        await store.off_loop(store.record_generation_time, bucket(run), seconds, now)
        self.ctx.schedule.learn(bucket(run), seconds, key=run.id)

    async def _learn_render(self, run: Run, status: JobStatus, now: float) -> None:
        """Teach the poll schedule how long this run's file took to render: from Motion's
        `completed_at` to the middle of the window in which the link appeared. Only from two
        looks in a row (not across a restart or an outage, which would stretch it), once per
        run, with `completed_at` kept within what we saw (clock skew)."""
        completed, previous = _epoch(status.completed_at), run.last_poll_at
        if completed is None or previous is None or run.id in self._renders_learned:
            return
        if now - previous > 2 * self.ctx.schedule.maximum + self.ctx.schedule.initial:
            return  # looks far apart: the render's end is not known closely enough
        started = run.sent_at if run.sent_at is not None else previous
        completed = min(now, max(completed, started))
        low, high = max(0.0, previous - completed), now - completed
        if high <= 0:
            return
        self._renders_learned[run.id] = None
        while len(self._renders_learned) > RENDERS_REMEMBERED:
            self._renders_learned.popitem(last=False)
        seconds = (min(low, high) + high) / 2
        store = self.ctx.store
        await store.off_loop(store.record_generation_time, RENDER, seconds, now)
        self.ctx.schedule.learn_render(seconds)


def _rendered_for(status: JobStatus, run: Run, elapsed: float) -> float | None:
    """Seconds the run's file has been rendering (since Motion's `completed_at`), within what
    we saw; None when Motion gave no time."""
    completed = _epoch(status.completed_at)
    if completed is None or run.last_poll_at is None:
        return None
    return min(max(0.0, elapsed), max(0.0, run.last_poll_at - completed))


def bucket(run: Run) -> str:
    """Runs are learned by their requested duration: a 1-5 min video takes longer."""
    return str(run.request.get("duration") or ANY)


def is_new_run(run: Run, status: JobStatus) -> bool:
    """Does this status describe `run`, rather than the run before it? (SPEC: never stale.)

    Motion's `completed_at` decides when both sides have one; the URL is compared (without its
    query string, which a signing CDN may change on every call) only when they do not."""
    baseline_completed, baseline_url = run.baseline_completed_at, run.baseline_url
    if run.kind != RunKind.FOLLOWUP or (baseline_completed is None and baseline_url is None):
        return True
    if status.status != MotionStatus.COMPLETED:
        return True
    if status.completed_at and baseline_completed:
        return status.completed_at != baseline_completed
    url = status.download_url
    return url is not None and _strip_query(url) != _strip_query(baseline_url or "")


def _retry_after(exc: MotionError) -> float | None:
    return exc.retry_after if isinstance(exc, RateLimited) else None


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
