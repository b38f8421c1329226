"""The one door to a new run (`ask_for_run`): where it may start, the spend limits, and the
preview MOTION_CONFIRM shows first. Every entry point (a command, a reply, a button, a form)
describes what it asks for as one of the `…Ask` types and goes through here, so the spend
controls are written once.

With the database away, an ask fails with `DatabaseUnavailable` only when nothing of it was
recorded (its one transaction rolled back); once that transaction has committed, nothing after
it (waking the job, asking whether the job is busy) can turn it into a failure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from bot.jobs.bounds import preview_for, run_for
from bot.jobs.context import REACT_QUEUED, JobContext
from bot.jobs.requesting import requesting_enterprise
from bot.jobs.settings import WorkspaceSettings
from bot.jobs.spend import SpendPolicy, next_day, next_month, utc_day, utc_month
from bot.jobs.workflow_ends import WorkflowEnds
from bot.motion import MotionRequest
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.out import is_direct_message
from bot.store import (
    DatabaseUnavailable,
    Job,
    LimitReached,
    LimitScope,
    PreviewGone,
    PreviewKind,
    PreviewState,
    RunState,
    StepPlace,
)

# Every way of starting a run is one of these, and every one goes through `ask_for_run`:
# the spend controls (channels, limits, previews) live there once. An entry point yet to come
# (an @mention outside a thread, the form, "New variation") asks with a `NewJobAsk`.


@dataclass(frozen=True)
class NewJobAsk:
    team_id: str
    channel_id: str
    user_id: str
    response_url: str | None
    request: MotionRequest
    event_keys: tuple[str, ...] = ()  # claimed with the job: "variation:<run id>" once
    origin_job_id: int | None = None  # a variation's: that thread links to the new one
    thread_ts: str | None = None  # an @mention's thread: the card is its first reply there
    step: StepPlace | None = None  # a Workflow Builder step's execution, taken with the job


@dataclass(frozen=True)
class FollowupAsk:
    job: Job
    channel_id: str
    ts: str | None  # the reply's; None for "Refine", which has no reply message to react to
    user_id: str
    request: MotionRequest
    event_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryAsk:
    """The "Send it again" button / "Try again" on a run whose outcome is unknown or that did not start."""

    run_id: int
    user_id: str
    team_id: str  # the workspace the press came from: the run must be its own


@dataclass(frozen=True)
class RestartAsk:
    """The "Start a new job" button from a followup Motion refused on a failed job."""

    run_id: int
    user_id: str
    team_id: str  # the workspace the press came from: the run must be its own


RunAsk = NewJobAsk | FollowupAsk | RetryAsk | RestartAsk


class AskKind(StrEnum):
    ACCEPTED = "accepted"  # recorded (and counted); the poller takes it from here
    PREVIEWED = "previewed"  # MOTION_CONFIRM: nothing recorded until Start
    REFUSED = "refused"  # a spend control said no; nothing recorded
    DUPLICATE = "duplicate"  # already done (a second press, a redelivery)


@dataclass(frozen=True)
class Admission:
    """What became of an ask; `message` is for its author only (ephemeral)."""

    kind: AskKind
    message: Message | None = None
    job_id: int | None = None
    run_id: int | None = None
    sandbox: bool = False  # an accepted run's: its workspace has no Motion key (the emulator)


@dataclass(frozen=True)
class _Resolved:
    kind: PreviewKind
    team_id: str
    channel_id: str
    user_id: str
    request: MotionRequest
    job_id: int | None = None  # the job a retry's run belongs to


PREVIEW_TTL_SECONDS = 86400.0
ALREADY_RETRIED = "This was already sent again (or is no longer needed)."
ALREADY_RESTARTED = "A new job was already started from this reply."
ALREADY_VARIED = "A new variation was already started from this result."
VARIATION_KEY = "variation:"  # kept for good (the store never forgets these claims)


class Admissions:
    """The spend controls, asked with the workspace of the run being asked for. `ends`: a
    Workflow Builder step whose preview will not be started ends there."""

    def __init__(self, ctx: JobContext, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.ends = ends

    def ask_for_run(self, ask: RunAsk) -> Admission:
        """The one door to a new run: where it may start, the limits, and the preview.

        Without MOTION_CONFIRM the run is recorded (and counted, in the same transaction)
        before the caller acknowledges Slack; with it, only a preview is kept, and `confirm`
        records the run when its author presses Start."""
        ctx = self.ctx
        resolved = self._resolve(ask)
        if isinstance(resolved, Admission):
            return resolved
        settings = ctx.settings.for_team(resolved.team_id)  # read once for the whole ask
        refused = self._refused_place(resolved, settings)
        if refused is not None:
            return refused
        if settings.spend.confirm:
            return self._preview(ask, resolved, settings.spend)
        return self._record(ask, resolved, settings)

    async def ask_for_run_off_loop(self, ask: RunAsk) -> Admission:
        """`ask_for_run` on the store's workers (`Store.off_loop`): the ack waits for its own
        transaction only, while the loop goes on serving other requests and jobs."""
        return await self.ctx.store.off_loop(self.ask_for_run, ask)

    def confirm(
        self, team_id: str, token: str, user_id: str, response_url: str | None
    ) -> Admission:
        """Start on a preview: the run is recorded and counted, the preview claimed, all in one
        transaction, so Start pressed twice (or redelivered) starts one run. `team_id`: the
        workspace of the press (another workspace's preview raises `OtherWorkspace`)."""
        ctx = self.ctx
        preview = preview_for(ctx.store, team_id, token)
        if preview is None or preview.state != PreviewState.PENDING:
            return self._answer(AskKind.DUPLICATE, messages.PREVIEW_GONE)
        if preview.user_id != user_id:
            return self._answer(AskKind.REFUSED, messages.PREVIEW_NOT_YOURS)
        step = ctx.store.step_of_preview(token)  # a Workflow Builder step's preview
        if ctx.clock() - preview.created_at > PREVIEW_TTL_SECONDS:
            ctx.store.cancel_preview(token)
            self.ends.end_preview(step, messages.STEP_PREVIEW_EXPIRED)
            return self._answer(AskKind.REFUSED, messages.PREVIEW_EXPIRED)
        request = MotionRequest.from_json(preview.request or {"prompt": ""})
        ask: RunAsk
        if preview.kind == PreviewKind.NEW_JOB:
            place = StepPlace(step, preview.team_id, preview.channel_id, user_id) if step else None
            ask = NewJobAsk(
                preview.team_id, preview.channel_id, user_id, response_url, request,
                thread_ts=preview.reply_ts,  # a new job's preview keeps its mention's thread
                step=place,
            )  # fmt: skip
        elif preview.kind == PreviewKind.FOLLOWUP:
            job = ctx.store.job(preview.job_id or 0)
            if job is None:
                return self._answer(AskKind.DUPLICATE, messages.PREVIEW_GONE)
            ask = FollowupAsk(job, preview.channel_id, preview.reply_ts, user_id, request)
        elif preview.kind == PreviewKind.RETRY:
            ask = RetryAsk(preview.run_id or 0, user_id, preview.team_id)
        else:
            ask = RestartAsk(preview.run_id or 0, user_id, preview.team_id)
        resolved = self._resolve(ask)
        if isinstance(resolved, Admission):
            return resolved
        settings = ctx.settings.for_team(resolved.team_id)
        admission = self._refused_place(resolved, settings) or self._record(
            ask, resolved, settings, token
        )
        if admission.kind != AskKind.ACCEPTED:
            if step is not None and admission.kind == AskKind.REFUSED and admission.message:
                ctx.store.cancel_preview(token)  # a workflow's run is refused for good
                self.ends.end_preview(step, admission.message.text)
            return admission
        said = messages.preview_answer(messages.PREVIEW_STARTED[preview.kind], admission.sandbox)
        return replace(admission, message=said)

    def cancel(self, team_id: str, token: str, user_id: str) -> Admission:
        """Cancel on a preview: nothing is recorded, nothing is spent."""
        preview = preview_for(self.ctx.store, team_id, token)
        if preview is not None and preview.user_id != user_id:
            return self._answer(AskKind.REFUSED, messages.PREVIEW_NOT_YOURS)
        step = self.ctx.store.step_of_preview(token)
        if preview is None or not self.ctx.store.cancel_preview(token):
            return self._answer(AskKind.DUPLICATE, messages.PREVIEW_GONE)
        self.ends.end_preview(step, messages.STEP_PREVIEW_CANCELLED)
        return self._answer(AskKind.ACCEPTED, messages.PREVIEW_CANCELLED)

    def usage_view(self, team_id: str, user_id: str) -> messages.UsageView:
        ctx = self.ctx
        policy = ctx.settings.for_team(team_id).spend
        now = ctx.clock()
        mine = ctx.store.usage_of(team_id, user_id, utc_day(now), utc_month(now))
        return messages.UsageView(
            now=now,
            today=mine.today,
            month=mine.month,
            workspace_month=ctx.store.workspace_runs(team_id, utc_month(now)),
            per_user_per_day=policy.runs_per_user_per_day,
            per_month=policy.runs_per_month,
            day_resets_at=next_day(now).timestamp(),
            month_resets_at=next_month(now).timestamp(),
        )

    def _resolve(self, ask: RunAsk) -> _Resolved | Admission:
        """Where the run would start, for whom, with what; or why there is nothing to start."""
        ctx = self.ctx
        if isinstance(ask, NewJobAsk):
            return _Resolved(
                PreviewKind.NEW_JOB, ask.team_id, ask.channel_id, ask.user_id, ask.request
            )
        if isinstance(ask, FollowupAsk):
            return _Resolved(
                PreviewKind.FOLLOWUP, ask.job.team_id, ask.job.channel_id, ask.user_id,
                ask.request,
            )  # fmt: skip
        found = run_for(ctx.store, ask.team_id, ask.run_id)
        run, job = (found.run, found.job) if found else (None, None)
        if isinstance(ask, RetryAsk):
            if run is None or job is None or run.state not in (RunState.UNKNOWN, RunState.REJECTED):
                return self._done(ALREADY_RETRIED)
            return _Resolved(
                PreviewKind.RETRY, job.team_id, job.channel_id, ask.user_id,
                MotionRequest.from_json(run.request), job.id,
            )  # fmt: skip
        first = ctx.store.first_request(run.job_id) if run else None
        if run is None or job is None or first is None or run.state != RunState.REJECTED:
            return self._done(ALREADY_RESTARTED)
        merged = MotionRequest.from_json(first).merged_with(MotionRequest.from_json(run.request))
        return _Resolved(PreviewKind.RESTART, job.team_id, job.channel_id, ask.user_id, merged)

    def _record(
        self, ask: RunAsk, resolved: _Resolved, settings: WorkspaceSettings,
        token: str | None = None,
    ) -> Admission:  # fmt: skip
        """Record the run and count it in one transaction; over a limit, nothing is kept. A
        new job is in sandbox mode when its workspace has no Motion key now, and stays so."""
        ctx = self.ctx
        now = ctx.clock()
        sandbox = settings.sandbox
        spend = settings.spend.spend(resolved.team_id, resolved.user_id, now, token)
        request = resolved.request.to_json()
        try:
            if isinstance(ask, NewJobAsk):
                created_job = ctx.store.create_job(
                    team_id=ask.team_id, channel_id=ask.channel_id, requester=ask.user_id,
                    response_url=ask.response_url, request=request, sandbox=sandbox,
                    now=now, spend=spend, event_keys=ask.event_keys,
                    origin_job_id=ask.origin_job_id, parent_ts=ask.thread_ts, step=ask.step,
                    enterprise_id=requesting_enterprise(),
                )  # fmt: skip
                if created_job is None:
                    return Admission(AskKind.DUPLICATE) if ask.step else self._done(ALREADY_VARIED)
                job_id, run_id = created_job
                ctx.wake_new(job_id)
                return Admission(AskKind.ACCEPTED, job_id=job_id, run_id=run_id, sandbox=sandbox)
            if isinstance(ask, FollowupAsk):
                job = ask.job
                new_run = ctx.store.add_followup(
                    job.id, request, ask.user_id, ask.channel_id, ask.ts, now,
                    event_keys=ask.event_keys, spend=spend,
                )  # fmt: skip
                if new_run is None:
                    return Admission(AskKind.DUPLICATE)
                if ask.ts is not None:
                    ctx.background.react(ctx.slack_of(job), ask.channel_id, ask.ts, REACT_QUEUED)
                if not self._busy(job.id):
                    ctx.wake(job.id)  # a busy job sends it after its run; waking would cost a poll
                return Admission(
                    AskKind.ACCEPTED, job_id=job.id, run_id=new_run, sandbox=job.sandbox
                )
            if isinstance(ask, RetryAsk):
                copied = ctx.store.copy_run(ask.run_id, ask.user_id, now, spend)
                if copied is None or resolved.job_id is None:
                    return self._done(ALREADY_RETRIED)
                ctx.wake(resolved.job_id)
                return Admission(
                    AskKind.ACCEPTED, job_id=resolved.job_id, run_id=copied, sandbox=sandbox
                )
            created = ctx.store.restart_from(
                ask.run_id, request, ask.user_id, resolved.team_id, sandbox, now, spend
            )
            if created is None:
                return self._done(ALREADY_RESTARTED)
            ctx.wake_new(created)
            return Admission(AskKind.ACCEPTED, job_id=created, sandbox=sandbox)
        except LimitReached as exc:
            return self._refused_limit(exc.scope, exc.used, exc.limit, resolved)
        except PreviewGone:
            return self._answer(AskKind.DUPLICATE, messages.PREVIEW_GONE)

    def _busy(self, job_id: int) -> bool:
        """Whether the job has a run in Motion (its followup then waits its turn). Asked after
        the followup was recorded: with the database gone meanwhile, the job is woken anyway
        (a wasted poll at most) rather than the recorded followup reported as not started."""
        try:
            return self.ctx.store.has_active_run(job_id)
        except DatabaseUnavailable:
            return False

    def _preview(self, ask: RunAsk, resolved: _Resolved, policy: SpendPolicy) -> Admission:
        """MOTION_CONFIRM: keep what would be started under a random token; show it privately.
        Already at a limit, the run is refused now rather than after Start."""
        ctx = self.ctx
        view = self.usage_view(resolved.team_id, resolved.user_id)
        if policy.runs_per_user_per_day is not None and view.today >= policy.runs_per_user_per_day:
            return self._refused_limit(
                LimitScope.USER_DAY, view.today, policy.runs_per_user_per_day, resolved
            )
        if policy.runs_per_month is not None and view.workspace_month >= policy.runs_per_month:
            return self._refused_limit(
                LimitScope.WORKSPACE_MONTH, view.workspace_month, policy.runs_per_month, resolved
            )
        token = policy.new_token()
        followup = ask if isinstance(ask, FollowupAsk) else None
        saved = ctx.store.save_preview(
            token=token,
            kind=resolved.kind,
            team_id=resolved.team_id,
            channel_id=resolved.channel_id,
            user_id=resolved.user_id,
            now=ctx.clock(),
            job_id=followup.job.id if followup else None,
            run_id=ask.run_id if isinstance(ask, RetryAsk | RestartAsk) else None,
            reply_ts=followup.ts
            if followup
            else (
                ask.thread_ts if isinstance(ask, NewJobAsk) else None  # a mention's thread
            ),
            request=resolved.request.to_json(),
            event_keys=ask.event_keys if isinstance(ask, FollowupAsk | NewJobAsk) else (),
            step=ask.step if isinstance(ask, NewJobAsk) else None,
        )
        if not saved:
            return Admission(AskKind.DUPLICATE)
        preview = messages.run_preview(
            kind=resolved.kind, request=resolved.request, token=token, view=view,
            sandbox=ctx.sandbox_here(),
        )  # fmt: skip
        return Admission(AskKind.PREVIEWED, preview)

    def _refused_place(self, resolved: _Resolved, settings: WorkspaceSettings) -> Admission | None:
        """Why a run may not start where it would, or None. `MOTION_ALLOWED_CHANNELS` names
        channels only: a direct message is allowed unless the workspace turned DMs off."""
        if is_direct_message(resolved.channel_id):
            if settings.allow_dms:
                return None
            return Admission(AskKind.REFUSED, messages.dms_off(settings.sandbox))
        if not settings.spend.channel_allowed(resolved.channel_id):
            return self._refused_channel(settings.spend, settings.sandbox)
        return None

    def _refused_channel(self, policy: SpendPolicy, sandbox: bool) -> Admission:
        self.ctx.events.run_refused("channel")
        allowed = list(policy.allowed_channels)
        message = messages.channel_not_allowed(allowed=allowed, sandbox=sandbox)
        return Admission(AskKind.REFUSED, message)

    def _refused_limit(
        self, scope: LimitScope, used: int, limit: int, resolved: _Resolved
    ) -> Admission:
        self.ctx.events.run_refused(
            "user_day" if scope == LimitScope.USER_DAY else "workspace_month"
        )
        view = self.usage_view(resolved.team_id, resolved.user_id)
        message = messages.limit_reached(
            scope=scope, used=used, limit=limit, view=view, sandbox=self.ctx.sandbox_here()
        )
        return Admission(AskKind.REFUSED, message)

    def _done(self, text: str) -> Admission:
        return Admission(AskKind.DUPLICATE, messages.already_done(text, self.ctx.sandbox_here()))

    def _answer(self, kind: AskKind, text: str) -> Admission:
        return Admission(kind, messages.preview_answer(text, self.ctx.sandbox_here()))
