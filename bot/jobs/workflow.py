"""A Workflow Builder step (`function_executed` for `make_motion_video`) starts a job exactly as
`/motion` from the requester in the step's channel would: through the one door
(`Admissions.ask_for_run`), with its spend controls and MOTION_CONFIRM's preview (shown to the
requester), and the card and thread the poller makes of it.

The execution's id is the key: it is taken in the transaction that records the job (or the
preview, or the refusal), so a redelivered event, with the same event id or a new one, on this
instance or another, starts nothing more. How the step ends is `bot.jobs.workflow_ends`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.command_line import Field, UsageError, request_problems, slack_to_plain
from bot.jobs.admission import Admissions, AskKind, NewJobAsk
from bot.jobs.context import JobContext
from bot.jobs.workflow_ends import WorkflowEnds
from bot.motion import MotionRequest
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.out import SlackFailure
from bot.store import StepPlace

log = logging.getLogger(__name__)
CALLBACK_ID = "make_motion_video"  # the manifest's `functions` key
# The manifest's input names first; the others are what a hand-made step might call them.
_NAMES = {
    "prompt": ("prompt",),
    "channel": ("channel", "channel_id"),
    "requester": ("requester", "requester_id", "user", "user_id"),
    "style": ("style_link", "style", "style_url"),
    "aspect": ("aspect",),
    "duration": ("duration",),
}
# The order problems are reported in, as the command does: the prompt first.
_ORDER = (Field.PROMPT, Field.STYLE, Field.ASPECT, Field.DURATION)


class StepOutcome(StrEnum):
    STARTED = "started"  # the job is recorded; the poller posts its card
    PREVIEWED = "previewed"  # MOTION_CONFIRM: the requester was shown Start / Cancel
    REFUSED = "refused"  # nothing started; the step failed with why
    DUPLICATE = "duplicate"  # the execution was already taken (a redelivery)


@dataclass(frozen=True)
class StepInputs:
    channel_id: str
    requester: str
    request: MotionRequest


def _text(inputs: Mapping[str, Any], name: str) -> str | None:
    for key in _NAMES[name]:
        value = inputs.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def step_inputs(inputs: Mapping[str, Any]) -> StepInputs:
    """The step's inputs as a request, by the command's rules; UsageError says what is wrong."""
    channel, requester = _text(inputs, "channel"), _text(inputs, "requester")
    if channel is None:
        raise UsageError(messages.STEP_NO_INPUT.format(field="channel"))
    if requester is None:
        raise UsageError(messages.STEP_NO_INPUT.format(field="requester"))
    prompt = slack_to_plain(_text(inputs, "prompt") or "").strip()
    style, aspect = _text(inputs, "style"), _text(inputs, "aspect")
    duration = _text(inputs, "duration")
    problems = request_problems(prompt, style, [], aspect, duration, form=True)
    for field in _ORDER:
        if field in problems:
            raise UsageError(problems[field])
    return StepInputs(channel, requester, MotionRequest(prompt, style, (), aspect, duration))


class WorkflowSteps:
    def __init__(self, ctx: JobContext, admissions: Admissions, ends: WorkflowEnds) -> None:
        self.ctx = ctx
        self.admissions = admissions
        self.ends = ends

    def take(self, *, execution_id: str, team_id: str, inputs: Mapping[str, Any]) -> StepOutcome:
        """Start the step's job (or its preview), or end the step with why not; once per
        execution, whatever the deliveries."""
        try:
            asked = step_inputs(inputs)
        except UsageError as problem:
            place = StepPlace(
                execution_id, team_id, _text(inputs, "channel") or "",
                _text(inputs, "requester") or "",
            )  # fmt: skip
            self.ends.refuse(place, str(problem))
            return StepOutcome.REFUSED
        place = StepPlace(execution_id, team_id, asked.channel_id, asked.requester)
        ask = NewJobAsk(team_id, asked.channel_id, asked.requester, None, asked.request, step=place)
        admission = self.admissions.ask_for_run(ask)
        if admission.kind == AskKind.ACCEPTED:
            log.info("workflow step %s: job %s", execution_id, admission.job_id)
            return StepOutcome.STARTED
        if admission.kind == AskKind.PREVIEWED and admission.message is not None:
            self.ctx.background.run(self.show_preview(place, admission.message))
            return StepOutcome.PREVIEWED
        if admission.kind == AskKind.REFUSED and admission.message is not None:
            self.ends.refuse(place, admission.message.text)
            return StepOutcome.REFUSED
        return StepOutcome.DUPLICATE

    async def take_off_loop(
        self, *, execution_id: str, team_id: str, inputs: Mapping[str, Any]
    ) -> StepOutcome:
        """`take` on the store's workers: the ack waits for its own transaction only."""
        return await self.ctx.store.off_loop(
            self.take, execution_id=execution_id, team_id=team_id, inputs=inputs
        )

    async def show_preview(self, place: StepPlace, preview: Message) -> None:
        """MOTION_CONFIRM: the preview goes to the requester, privately, in the step's channel
        (joined first when public, as the card would). Shown to nobody, it could never be
        started: the step then ends with why."""
        slack = self.ctx.slack_here()  # the step runs in the requesting workspace
        try:
            await slack.join(place.channel_id)
        except SlackFailure as exc:
            log.info("workflow step %s: join failed (%s)", place.execution_id, exc.code)
        error = await slack.tell_privately(place.channel_id, place.requester, preview.payload())
        if error is None:
            return
        step = await self.ctx.store.read_off_loop(self.ctx.store.step, place.execution_id)
        if step is not None and step.preview_token:
            await self.ctx.store.off_loop(self.ctx.store.cancel_preview, step.preview_token)
        words = messages.step_preview_unshown(error)
        await self.ctx.store.off_loop(self.ends.end_preview, place.execution_id, words)
