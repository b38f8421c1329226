"""The form, Refine and the Home tab: what the app shows in views, and what their submissions
become. A submission asks for its run through `Admissions.ask_for_run`, like every other
entry point, so the spend controls apply to it unchanged."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from bot.command_line import request_problems
from bot.jobs.admission import Admissions, AskKind, FollowupAsk, NewJobAsk
from bot.jobs.bounds import job_for, run_for
from bot.jobs.card import job_label
from bot.jobs.context import JobContext
from bot.jobs.intake import NOT_SENT, Intake
from bot.jobs.settings_form import SettingsForms
from bot.motion import ASPECTS, DURATIONS, FileAttachment, MotionRequest
from bot.slack import messages
from bot.slack.ids import BlockId
from bot.slack.out import SlackOut
from bot.store import DatabaseUnavailable, Job, Run, RunState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FormAnswers:
    """What a person filled in, as Slack sent it (`view.state.values`), by field."""

    prompt: str = ""
    style: str | None = None
    aspect: str | None = None
    duration: str | None = None
    channel: str | None = None
    response_url: str | None = None  # Slack's, for the picked channel
    file_ids: tuple[str, ...] = ()  # the file field's files, checked before the submission


@dataclass(frozen=True)
class SubmitOutcome:
    """What a submission's ack says: `errors` by block_id keep the form open; otherwise it
    closes. `kind` is for the log and the tests."""

    kind: AskKind | None
    errors: dict[str, str] = field(default_factory=dict)


def _checked(answers: FormAnswers) -> tuple[MotionRequest | None, dict[str, str]]:
    """The command's own rules (`request_problems`), each problem on its field's block."""
    prompt = answers.prompt.strip()
    style = (answers.style or "").strip() or None
    problems = request_problems(
        prompt, style, (), answers.aspect, answers.duration,
        max_prompt=messages.FORM_PROMPT_MAX, form=True,
    )  # fmt: skip
    if problems:
        return None, {str(name): messages.field_error(text) for name, text in problems.items()}
    return MotionRequest(prompt, style, (), answers.aspect, answers.duration), {}


class Surfaces:
    """Views and their submissions; a run they ask for goes through `admissions`, a Refine
    becomes the followup `intake` makes of it."""

    def __init__(
        self, ctx: JobContext, admissions: Admissions, intake: Intake,
        settings_forms: SettingsForms | None = None,
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.admissions = admissions
        self.intake = intake
        self.settings_forms = settings_forms  # None: no Settings button (settings not stored)

    def new_form(self, channel_id: str | None) -> dict[str, object]:
        return messages.new_video_form(
            channel_id=channel_id,
            aspects=ASPECTS,
            durations=DURATIONS,
            sandbox=self.ctx.sandbox_here(),
        )

    def open_new_form(self, trigger_id: str, channel_id: str | None) -> None:
        """Open the form right after the ack: the trigger is good for 3 seconds, once."""
        view = self.new_form(channel_id)
        self.ctx.background.run(self._open(self.ctx.slack_here(), trigger_id, view))

    def open_refine_form(self, team_id: str, trigger_id: str, run_id: int) -> bool:
        """False when the run or its job is gone (the caller says so privately); another
        workspace's run raises `OtherWorkspace` and no form opens."""
        ctx = self.ctx
        found = run_for(ctx.store, team_id, run_id)
        if found is None:
            return False
        run, job = found.run, found.job
        view = messages.refine_form(
            job_id=job.id, run_number=run.number, aspects=ASPECTS, durations=DURATIONS,
            sandbox=ctx.sandbox_here(),
        )  # fmt: skip
        ctx.background.run(self._open(ctx.slack_here(), trigger_id, view))
        return True

    async def _open(self, slack: SlackOut, trigger_id: str, view: dict[str, object]) -> None:
        """With the requesting workspace's `slack`: the trigger is that workspace's."""
        await slack.open_view(trigger_id, dict(view))

    def submit_new_form(
        self, *, team_id: str, user_id: str, view_id: str, answers: FormAnswers,
        files: tuple[FileAttachment, ...] = (),
    ) -> SubmitOutcome:  # fmt: skip
        """A valid form starts its job as `/motion` would; a replayed submission (the same view)
        starts nothing more. Refusals show on the channel field, so another can be picked.
        `files`: the file field's, already checked (`Mentions.submit_new_form_with_files`)."""
        request, errors = _checked(answers)
        if request is not None and files:
            request = request.with_files(files)
        if not answers.channel:
            errors[BlockId.CHANNEL] = messages.NO_CHANNEL
        if request is None or errors or not answers.channel:
            return SubmitOutcome(None, errors)
        ask = NewJobAsk(
            team_id, answers.channel, user_id, answers.response_url, request,
            event_keys=(f"form:{view_id}",),
        )  # fmt: skip
        admission = self.admissions.ask_for_run(ask)
        if admission.kind == AskKind.REFUSED and admission.message:
            return SubmitOutcome(
                admission.kind,
                {BlockId.CHANNEL: messages.field_error(admission.message.text)},
            )
        if admission.kind == AskKind.PREVIEWED and admission.message:
            if answers.response_url:
                payload = admission.message.payload()
                self.ctx.background.run(
                    self.ctx.slack_here().respond(answers.response_url, payload)
                )
            else:
                self.ctx.tell_privately(answers.channel, user_id, admission.message.payload(), None)
        return SubmitOutcome(admission.kind)

    def submit_refine(
        self, *, team_id: str, job_id: int, user_id: str, view_id: str, answers: FormAnswers
    ) -> SubmitOutcome:
        """A followup as if replied in the thread, claimed by the view's id (one per form).
        The form's job must be the submitting workspace's (`OtherWorkspace` otherwise), checked
        before anything else, so a forged form learns nothing, not even what it got wrong."""
        job = job_for(self.ctx.store, team_id, job_id)
        request, errors = _checked(answers)
        if request is None:
            return SubmitOutcome(None, errors)
        if job is None:
            return SubmitOutcome(AskKind.REFUSED, {str(BlockId.PROMPT): messages.REFINE_GONE})
        ask = self.intake.refine_of(team_id, job_id, user_id, view_id, request)
        if ask is None:
            return SubmitOutcome(AskKind.REFUSED, {str(BlockId.PROMPT): messages.REFINE_GONE})
        admission = self.admissions.ask_for_run(ask)
        if admission.kind == AskKind.REFUSED and admission.message:
            return SubmitOutcome(
                admission.kind, {str(BlockId.PROMPT): messages.field_error(admission.message.text)}
            )
        job = ask.job if isinstance(ask, FollowupAsk) else None  # read before: nothing after
        if job is not None and admission.kind != AskKind.DUPLICATE:
            said = admission.message or messages.refine_queued(sandbox=self.ctx.sandbox_here())
            self.ctx.tell_privately(job.channel_id, user_id, said.payload(), job.thread_ts)
        return SubmitOutcome(admission.kind)

    # ------------------------------------------------------------ App Home

    def refresh_home(self, team_id: str, user_id: str, asker: SlackOut | None = None) -> None:
        """Publish the viewer's Home tab, fresh each time it is opened (after the ack).
        `asker`: the request's own Slack client, to ask whether the viewer is an admin or
        owner of the workspace (who get "Settings"); None: nobody is asked, no button."""
        self.ctx.background.run(self._publish_home(team_id, user_id, asker))

    async def _publish_home(self, team_id: str, user_id: str, asker: SlackOut | None) -> None:
        try:
            await self._publish_home_now(team_id, user_id, asker)
        except DatabaseUnavailable as away:  # the tab keeps what it showed; the next open redraws
            log.info("the Home tab of %s was not redrawn: %s", user_id, away)

    async def _publish_home_now(self, team_id: str, user_id: str, asker: SlackOut | None) -> None:
        ctx, forms = self.ctx, self.settings_forms
        slack = ctx.slack_here()  # the viewer's workspace (`team_id`, and its enterprise)
        settings = (
            forms is not None
            and asker is not None
            and await forms.may_change(team_id, user_id, asker)
        )
        recent = await ctx.store.read_off_loop(
            self.intake.recent_with_runs, team_id, user_id, messages.HOME_JOBS + 1,
            messages.HOME_JOBS,
        )  # fmt: skip

        async def entry(job: Job, runs: list[Run]) -> messages.HomeJob:
            link = (
                await ctx.slack_of(job).permalink(job.channel_id, job.thread_ts)
                if job.thread_ts
                else None
            )
            finished = [r for r in runs if r.state == RunState.DONE and r.download_url]
            return messages.HomeJob(
                prompt=job.prompt,
                status=job_label(job, runs, ctx.clock()),
                runs=sum(1 for r in runs if r.state not in NOT_SENT),
                permalink=link,
                download_url=(
                    ctx.download_link(job, finished[-1].number, finished[-1].download_url)
                    if finished and finished[-1].download_url
                    else None
                ),
                created_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.created_at)),
                channel_id=job.channel_id,
            )

        entries = await asyncio.gather(*(entry(job, runs) for job, runs in recent.shown))
        sandbox = (await ctx.store.read_off_loop(ctx.settings.for_team, team_id)).sandbox
        view = messages.home_view(
            list(entries), recent.usage, sandbox=sandbox, more=recent.more, settings=settings
        )
        await slack.publish_home(user_id, view)
