"""The entry points that may carry Slack files: a thread reply with files, an @mention outside a
job thread (a new job in that message's thread), and the form's file field.

Their files are checked with Slack (`files.info`, see `bot.jobs.files`) before anything is
recorded, so this is the async layer in front of the synchronous intake: a refusal is said and
nothing is started or counted; good files ride along in the request, and the run goes through
the one door (`ask_for_run`) like every other. Every store call here runs on the store's workers
(`Store.off_loop`), within the request's budget: with the database away, `DatabaseUnavailable`
with nothing recorded, and Slack delivers the event again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from bot.command_line import UsageError, parse_request, strip_mention
from bot.jobs.admission import Admissions, AskKind, NewJobAsk
from bot.jobs.context import JobContext
from bot.jobs.files import FileRefused, with_files
from bot.jobs.intake import Intake, ReplyKind, ReplyOutcome, reply_kind
from bot.jobs.surfaces import FormAnswers, SubmitOutcome, Surfaces
from bot.motion import MAX_ATTACHMENTS, FileAttachment
from bot.slack import messages
from bot.slack.ids import BlockId
from bot.slack.messages import Message
from bot.store import Job, JobState, within_request

log = logging.getLogger(__name__)
# A reply in a thread the store does not know, while a card is being posted in that channel,
# waits this long at most for the card's answer (the ack must leave within Slack's 3 s).
CARD_WAIT_SECONDS = 2.0
CARD_WAIT_STEP = 0.05
CARD_IN_FLIGHT_SECONDS = 30.0  # a card handed to Slack longer ago than this is not awaited


class Mentions:
    """Files checked, then the reply, mention or form handed on: a reply to `intake`, a new
    job to `admissions`, the form to `surfaces`."""

    def __init__(
        self, ctx: JobContext, admissions: Admissions, intake: Intake, surfaces: Surfaces
    ) -> None:
        self.ctx = ctx
        self.admissions = admissions
        self.intake = intake
        self.surfaces = surfaces

    async def attachments_for(
        self, team_id: str, file_ids: Sequence[str]
    ) -> tuple[FileAttachment, ...]:
        """The files as Motion attachments, or FileRefused with what to do instead."""
        if not file_ids:
            return ()
        if self.ctx.files is None:
            raise FileRefused(messages.no_public_url_for_files())
        return await self.ctx.files.attachments(team_id, file_ids)

    async def take_file_reply(
        self, *, event_keys: list[str], team_id: str, channel_id: str, thread_ts: str, ts: str,
        user_id: str, text: str, bot_user_id: str | None, file_ids: Sequence[str] = (),
    ) -> ReplyOutcome:  # fmt: skip
        """A thread reply (with or without files): files are checked first, only in a job
        thread and only once per delivery, then the reply is taken as any other."""
        ctx = self.ctx

        async def take(
            files: tuple[FileAttachment, ...] = (), problem: str | None = None
        ) -> ReplyOutcome:
            return await self.intake.take_reply_off_loop(
                event_keys=event_keys, team_id=team_id, channel_id=channel_id,
                thread_ts=thread_ts, ts=ts, user_id=user_id, text=text, bot_user_id=bot_user_id,
                files=files, file_problem=problem,
            )  # fmt: skip

        if not file_ids:
            outcome = await take()
            if outcome.kind == ReplyKind.IGNORED:
                job = await self.late_thread(team_id, channel_id, thread_ts)
                if job is not None and job.state not in (JobState.NEW, JobState.ABANDONED):
                    outcome = await take()  # its card's answer came while the reply waited
            return outcome
        if await self._claimed(event_keys):
            return ReplyOutcome(ReplyKind.DUPLICATE)  # the twin delivery: no second files.info
        job = await ctx.store.off_loop(
            ctx.store.job_for_thread, channel_id, thread_ts, team_id=team_id
        )
        if job is None:
            job = await self.late_thread(team_id, channel_id, thread_ts)
        if job is None or job.state in (JobState.NEW, JobState.ABANDONED):
            return ReplyOutcome(ReplyKind.IGNORED)  # files shared in any other thread: not ours
        try:
            files = await self.attachments_for(team_id, file_ids)
        except FileRefused as refused:
            return await take(problem=refused.message)
        return await take(files)

    async def _job_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        """Whether the thread is one of the workspace's jobs' (waiting a little for a card on
        its way)."""
        store = self.ctx.store
        job = await store.read_off_loop(
            store.job_for_thread, channel_id, thread_ts, team_id=team_id
        )
        return job is not None or await self.late_thread(team_id, channel_id, thread_ts) is not None

    async def _claimed(self, event_keys: Sequence[str]) -> bool:
        """Whether any of a delivery's keys was claimed already (its twin, or itself before)."""
        store = self.ctx.store
        for key in event_keys:
            if await store.read_off_loop(store.event_claimed, key):
                return True
        return False

    async def late_thread(self, team_id: str, channel_id: str, thread_ts: str) -> Job | None:
        """The job whose thread this is, waiting a little when a card is being posted in the
        channel; None (after two reads) for a thread that is no job's.

        People see a card the moment Slack posts it, but the app learns its ts (the job's
        thread) only from Slack's answer, and records it a moment later: a reply can arrive in
        between (a slow answer, a busy loop or database). It must not be ignored then, so while
        a card is in flight in the channel the reply waits for it to be recorded. The card is
        marked in flight before it is posted, so before anyone can reply in its thread: read in
        that order (in flight, then the thread), no recording can slip between the two reads."""
        store = self.ctx.store
        # Within the request's budget: the reply's own write comes after.
        deadline = time.monotonic() + within_request(CARD_WAIT_SECONDS)
        while True:
            since = self.ctx.clock() - CARD_IN_FLIGHT_SECONDS
            in_flight = await store.read_off_loop(
                store.card_in_flight, channel_id, since, team_id=team_id
            )
            job = await store.read_off_loop(
                store.job_for_thread, channel_id, thread_ts, team_id=team_id
            )
            if job is not None or not in_flight or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(CARD_WAIT_STEP)

    async def take_mention(
        self, *, event_keys: list[str], team_id: str, channel_id: str, ts: str,
        thread_ts: str | None, user_id: str, text: str, bot_user_id: str | None,
        file_ids: Sequence[str] = (),
    ) -> ReplyOutcome:  # fmt: skip
        """An `app_mention`. In a job thread it is a reply (a followup). Elsewhere its text minus
        the mention is the prompt of a new job whose card is the app's first reply in the
        message's thread; with no prompt, a short private hint. The `message` twin of the same
        message claims the same `msg:` key, so it makes nothing more."""
        ctx = self.ctx
        is_reply = bool(thread_ts) and thread_ts != ts
        if is_reply and thread_ts and await self._job_thread(team_id, channel_id, thread_ts):
            return await self.take_file_reply(
                event_keys=event_keys, team_id=team_id, channel_id=channel_id,
                thread_ts=thread_ts, ts=ts, user_id=user_id, text=text, bot_user_id=bot_user_id,
                file_ids=file_ids,
            )  # fmt: skip
        if await self._claimed(event_keys):
            return ReplyOutcome(ReplyKind.DUPLICATE)
        root = thread_ts if is_reply and thread_ts else ts
        prompt = strip_mention(text, bot_user_id)[0] if bot_user_id else text.strip()
        if not prompt.strip():
            return await self._answer_mention(
                event_keys,
                team_id,
                channel_id,
                user_id,
                root,
                messages.mention_hint(ctx.sandbox_here()),
            )
        try:
            request = parse_request(prompt)
            files = await self.attachments_for(team_id, file_ids)
            request = with_files(request, files, MAX_ATTACHMENTS)
        except (UsageError, FileRefused) as problem:
            said = problem.message if isinstance(problem, FileRefused) else str(problem)
            return await self._answer_mention(
                event_keys, team_id, channel_id, user_id, root,
                messages.usage_error(said, ctx.sandbox_here()),
            )  # fmt: skip
        return await self._start_in_thread(
            NewJobAsk(team_id, channel_id, user_id, None, request, thread_ts=root), event_keys
        )

    async def take_direct_message(
        self, *, event_keys: list[str], team_id: str, channel_id: str, ts: str, user_id: str,
        text: str, bot_user_id: str | None, file_ids: Sequence[str] = (),
    ) -> ReplyOutcome:  # fmt: skip
        """A message to the app in its Messages tab (a DM, not a reply): a prompt, taken as an
        @mention outside a job thread is (options and files as in a reply), its card the app's
        reply in the message's thread. With DMs turned off for the workspace it is answered
        there, briefly, and nothing starts (nor is any file looked at)."""
        ctx = self.ctx
        prompt = strip_mention(text, bot_user_id)[0] if bot_user_id else text.strip()
        off = not (await ctx.store.read_off_loop(ctx.settings.for_team, team_id)).allow_dms
        answer: Message | None = None
        if off:
            answer = messages.dms_off(ctx.sandbox_here())
        elif not prompt and file_ids:
            answer = messages.usage_error(messages.FILES_NEED_A_PROMPT, ctx.sandbox_here())
        elif not prompt:
            answer = messages.dm_hint(ctx.sandbox_here())
        if answer is not None:
            said = await self._answer_mention(event_keys, team_id, channel_id, user_id, ts, answer)
            return (
                ReplyOutcome(ReplyKind.REFUSED) if off and said.kind == ReplyKind.INVALID else said
            )
        return await self.take_mention(
            event_keys=event_keys, team_id=team_id, channel_id=channel_id, ts=ts,
            thread_ts=None, user_id=user_id, text=prompt, bot_user_id=None,
            file_ids=file_ids,
        )  # fmt: skip

    async def _start_in_thread(self, ask: NewJobAsk, event_keys: list[str]) -> ReplyOutcome:
        """A new job from a mention, its card in the mention's thread (`ask.thread_ts`)."""
        ctx = self.ctx
        channel_id, user_id, root = ask.channel_id, ask.user_id, ask.thread_ts
        keys = tuple(event_keys)
        settings = await ctx.store.read_off_loop(ctx.settings.for_team, ask.team_id)
        if not settings.spend.confirm:
            # One job per thread, even for two mentions at once (a preview may be cancelled:
            # not then).
            keys += (f"thread:{ask.team_id}:{channel_id}:{root}",)
        admission = await self.admissions.ask_for_run_off_loop(replace(ask, event_keys=keys))
        if admission.kind in (AskKind.REFUSED, AskKind.PREVIEWED) and admission.message:
            ctx.tell_privately(channel_id, user_id, admission.message.payload(), root)
        if admission.kind == AskKind.DUPLICATE and not await self._claimed(event_keys):
            # Not this delivery again (its keys were not taken): another mention in the same
            # thread has just started the thread's job.
            taken = messages.usage_error(messages.THREAD_TAKEN)
            ctx.tell_privately(channel_id, user_id, taken.payload(), root)
        return ReplyOutcome(reply_kind(admission.kind, ReplyKind.STARTED), admission.run_id)

    async def _answer_mention(
        self, event_keys: list[str], team_id: str, channel_id: str, user_id: str, root: str,
        message: Message,
    ) -> ReplyOutcome:  # fmt: skip
        """Say privately, in the message's thread, why nothing started: once per delivery (its
        keys claimed together, so a delivery the database missed is taken whole next time)."""
        store = self.ctx.store
        if not await store.off_loop(store.claim_events, event_keys, self.ctx.clock(), team_id):
            return ReplyOutcome(ReplyKind.DUPLICATE)
        self.ctx.tell_privately(channel_id, user_id, message.payload(), root)
        return ReplyOutcome(ReplyKind.INVALID)

    async def submit_new_form_with_files(
        self, *, team_id: str, user_id: str, view_id: str, answers: FormAnswers
    ) -> SubmitOutcome:
        """The form, its file field checked first: a refused file is shown on that field."""
        try:
            files = await self.attachments_for(team_id, answers.file_ids)
        except FileRefused as refused:
            return SubmitOutcome(None, {BlockId.FILES: messages.field_error(refused.message)})
        return await self.ctx.store.off_loop(
            self.surfaces.submit_new_form,
            team_id=team_id, user_id=user_id, view_id=view_id, answers=answers, files=files,
        )  # fmt: skip
