"""The service: where Motion, the store and Slack meet, one job at a time.

`advance(job_id)` does whatever a job needs next (post its card, send a waiting run, poll its
active run, announce a result, edit the card) and returns when the next look is due. The poller
guarantees that one job is never advanced twice at once, so nothing here needs locks; every step
is recorded before its side effect where repeating the side effect would cost credits
(Motion writes) and recorded together with its consequences where losing them would lose a
message (the `posts` outbox).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import messages
from bot.command_line import MotionRequest, UsageError, parse_request, strip_mention
from bot.messages import Message, RunLine
from bot.motion import (
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    JobStatus,
    MotionClient,
    MotionError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerRejected,
    Transient,
)
from bot.schedule import ANY, PollSchedule, generation_seconds
from bot.slack_out import SlackFailure, SlackOut
from bot.store import ACTIVE_RUN_STATES, Job, NewPost, Run, Store

log = logging.getLogger(__name__)

REACT_QUEUED = "hourglass_flowing_sand"
REACT_SENT = "arrow_forward"
REACT_FAILED = "x"
CARD_MIN_INTERVAL = 15.0  # seconds between progress-only edits of one card
PROGRESS_EDITS_PER_MINUTE = 30  # across all cards: chat.update is Tier 3 (~50/min a workspace)
MAX_SEND_ATTEMPTS = 6  # Motion unreachable before sending: retried with backoff, then reported
VERIFY_POLLS = 5  # status calls to look for a followup whose answer was lost
SETTLED_STATES = ("done", "failed", "unknown", "rejected", "retried", "restarted")


@dataclass
class TokenBucket:
    """At most `rate` per second on average, `burst` at once."""

    rate: float
    burst: float
    tokens: float = 0.0
    updated: float | None = None

    def take(self, now: float) -> bool:
        if self.updated is None:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to a thread reply, for the listener's logging and tests."""

    kind: str  # ignored | duplicate | queued | invalid
    run_id: int | None = None


class JobService:
    def __init__(
        self,
        store: Store,
        motion: MotionClient,
        slack: SlackOut,
        *,
        schedule: PollSchedule,
        sandbox: bool,
        notify_channel: str | None = None,
        requires_mention: bool = False,
        clock: Callable[[], float] = time.time,
        wake: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.motion = motion
        self.slack = slack
        self.schedule = schedule
        self.sandbox = sandbox
        self.notify_channel = notify_channel
        self.requires_mention = requires_mention
        self.clock = clock
        self.wake = wake or (lambda job_id: None)
        self._joined: set[str] = set()
        self._progress_edits = TokenBucket(rate=PROGRESS_EDITS_PER_MINUTE / 60, burst=10)
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ intake (listeners call these)

    def start_job(
        self,
        *,
        team_id: str,
        channel_id: str,
        user_id: str,
        response_url: str | None,
        request: MotionRequest,
    ) -> int:
        """Record the job before the command is acknowledged, so an ack never loses one."""
        job_id, _ = self.store.create_job(
            team_id=team_id,
            channel_id=channel_id,
            requester=user_id,
            response_url=response_url,
            request=request.to_json(),
            sandbox=self.sandbox,
            now=self.clock(),
        )
        self.wake(job_id)
        return job_id

    def take_reply(
        self,
        *,
        event_keys: list[str],
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        text: str,
        bot_user_id: str | None,
    ) -> ReplyOutcome:
        """Turn a human reply in a job thread into a queued followup, recorded before the ack."""
        job = self.store.job_for_thread(channel_id, thread_ts)
        if job is None or job.state in ("new", "abandoned"):
            return ReplyOutcome("ignored")
        mentioned = False
        if bot_user_id:
            text, mentioned = strip_mention(text, bot_user_id)
        if self.requires_mention and not mentioned:
            return ReplyOutcome("ignored")
        now = self.clock()
        try:
            request = parse_request(text)
        except UsageError as exc:
            post = NewPost("usage_error", messages.usage_error(str(exc), job.sandbox).payload())
            if not self.store.record_reply_error(job.id, event_keys, post, now):
                return ReplyOutcome("duplicate")
            self._react_later(channel_id, ts, REACT_FAILED)
            self.wake(job.id)
            return ReplyOutcome("invalid")
        run_id = self.store.add_followup(
            job.id, request.to_json(), user_id, channel_id, ts, now, event_keys=event_keys
        )
        if run_id is None:
            return ReplyOutcome("duplicate")
        self._react_later(channel_id, ts, REACT_QUEUED)
        self.wake(job.id)
        return ReplyOutcome("queued", run_id)

    def retry_run(self, run_id: int, user_id: str) -> bool:
        """The "Send it again" button: a new run with the same request, once per button."""
        new_id = self.store.copy_run(run_id, user_id, self.clock())
        if new_id is None:
            return False
        run = self.store.run(new_id)
        if run is not None:
            self.wake(run.job_id)
        return True

    def restart_job(self, run_id: int, user_id: str, team_id: str) -> int | None:
        """A failed job cannot take followups: start a new job in a new thread instead."""
        created = self.store.restart_from(run_id, user_id, team_id, self.sandbox, self.clock())
        if created is not None:
            self.wake(created)
        return created

    def send_job_list(self, *, team_id: str, user_id: str, response_url: str | None) -> None:
        """`/motion list`, answered through response_url once the permalinks are known."""
        if response_url:
            self._in_background(self._send_job_list(team_id, user_id, response_url))

    async def _send_job_list(self, team_id: str, user_id: str, response_url: str) -> None:
        jobs = self.store.recent_jobs(team_id, user_id, limit=10)

        async def listing(job: Job) -> messages.JobListing:
            runs = [r for r in self.store.runs(job.id) if r.state not in ("retried",)]
            link = (
                await self.slack.permalink(job.channel_id, job.thread_ts) if job.thread_ts else None
            )
            created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.created_at))
            sent = sum(1 for r in runs if r.state not in ("waiting", "rejected", "restarted"))
            return messages.JobListing(
                prompt=job.prompt,
                status=_job_label(job, runs, self.clock()),
                runs=sent,
                permalink=link,
                created_at=created,
            )

        listings = await asyncio.gather(*(listing(job) for job in jobs))
        await self.slack.respond(
            response_url, messages.job_list(list(listings), self.sandbox).payload()
        )

    def _react_later(self, channel: str, ts: str, name: str) -> None:
        self._in_background(self.slack.react(channel, ts, name))

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain_background(self, timeout: float = 5.0) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

    def recover(self) -> int:
        """At start, before any work: settle calls a dead process left in flight, resume all.

        A create whose answer never came cannot be checked (Motion has no list endpoint), so
        its thread is told and offered a button; a followup can be checked against the job's
        status, so it is verified by polling before anything is said.
        """
        now = self.clock()
        for run in self.store.interrupted_runs():
            job = self._job(run.job_id)
            if job.motion_job_id is None:
                log.warning("job %s: create was in flight at the last stop", job.id)
                self._finish(
                    job,
                    run,
                    "unknown",
                    messages.outcome_unknown(
                        run_number=run.number,
                        followup=False,
                        run_id=run.id,
                        sandbox=job.sandbox,
                    ),
                    error="process stopped before Motion answered",
                )
            else:
                self.store.mark_verifying(run.id)
        self.store.forget_events_before(now - 7 * 86400)
        for bucket, seconds in self.store.generation_times():
            self.schedule.learn(bucket, seconds)
        return self.store.resume_all(now)

    # ------------------------------------------------------------ the worker's step

    async def advance(self, job_id: int) -> float | None:
        """Do what the job needs now; returns when it next needs a look (None: until woken)."""
        job = self.store.job(job_id)
        if job is None or job.state == "abandoned":
            return None
        if job.state == "new":
            delay = await self._open_thread(job)
            if delay is not None:
                return delay
            job = self._job(job_id)
        if job.state == "new":
            return None
        try:
            if job.pending_posts:
                await self._flush_posts(job)
            runs = self.store.runs(job_id)
            delay: float | None = None
            for _ in range(3):  # a settled run may free the job for its next followup at once
                active = next((r for r in runs if r.state in ACTIVE_RUN_STATES), None)
                if active is not None and active.state != "sending":
                    delay, quiet = await self._poll(job, active)
                    if quiet:  # the common case: still going, nothing to re-read
                        break
                    job, runs = self._job(job_id), self.store.runs(job_id)
                    if job.pending_posts:
                        await self._flush_posts(job)
                    if any(r.id == active.id and r.state in ACTIVE_RUN_STATES for r in runs):
                        break
                    continue
                waiting = next((r for r in runs if r.state == "waiting"), None)
                if waiting is None or job.state != "open":
                    delay = None
                    break
                delay = await self._send(job, waiting)
                job, runs = self._job(job_id), self.store.runs(job_id)
                if any(
                    r.id == waiting.id and r.state in (*ACTIVE_RUN_STATES, "waiting") for r in runs
                ):
                    break
            await self._refresh_card(job, runs)
            if job.pending_posts:
                await self._flush_posts(self._job(job_id))
        except SlackFailure as exc:
            job = self._job(job_id)
            errors = job.errors + 1
            self.store.set_due(job_id, None, errors=errors)
            log.warning("job %s: Slack call failed (%s); retrying later", job_id, exc.code)
            return self.schedule.error_delay(errors)
        return delay

    def _job(self, job_id: int) -> Job:
        job = self.store.job(job_id)
        assert job is not None
        return job

    def _run(self, run_id: int) -> Run:
        run = self.store.run(run_id)
        assert run is not None
        return run

    # ------------------------------------------------------------ the thread

    async def _open_thread(self, job: Job) -> float | None:
        """Post the card (joining a public channel first); None when the thread exists."""
        channel = job.channel_id
        if channel not in self._joined:
            try:
                joined = await self.slack.join(channel)
            except SlackFailure as exc:
                return self.schedule.error_delay(job.errors + 1) if not exc.permanent else None
            if joined.member:
                self._joined.add(channel)
        card = self._card(job, self.store.runs(job.id))
        key = f"card:{job.id}"
        try:
            ts = None
            if job.card_hash == "posting":  # an earlier attempt may have reached Slack
                ts = await self.slack.find_post(channel, None, key, since=job.created_at)
            if ts is None:
                self.store.record_card_update(job.id, "posting", self.clock())
                ts = await self.slack.post(channel, card.payload(), key=key)
        except SlackFailure as exc:
            if not exc.permanent:
                errors = job.errors + 1
                self.store.set_due(job.id, None, errors=errors)
                return self.schedule.error_delay(errors)
            self._joined.discard(channel)
            log.info("job %s: cannot post in %s (%s): invite hint", job.id, channel, exc.code)
            self.store.abandon_job(job.id, self.clock())
            if job.response_url:
                hint = messages.invite_hint(
                    channel_is_dm=channel.startswith("D"), sandbox=job.sandbox
                )
                await self.slack.respond(job.response_url, hint.payload())
            return None
        self.store.record_card(job.id, ts, channel, _card_hash(card, "new"), self.clock())
        if job.origin_job_id:
            link = await self.slack.permalink(channel, ts)
            notice = messages.new_job_link(permalink=link, sandbox=job.sandbox)
            self.store.add_posts(
                job.origin_job_id, None, [NewPost("new_job", notice.payload())], self.clock()
            )
            self.wake(job.origin_job_id)
        return None

    def _card(self, job: Job, runs: list[Run]) -> Message:
        visible = [r for r in runs if r.state not in ("retried",)]
        lines = [
            RunLine(r.number, r.state, _run_label(r, self.clock()), r.download_url) for r in visible
        ]
        first = MotionRequest.from_json(runs[0].request) if runs else MotionRequest(job.prompt)
        status = _job_label(job, visible, self.clock())
        return messages.job_card(
            requester=job.requester,
            prompt=job.prompt,
            status=status,
            runs=lines,
            sandbox=job.sandbox,
            options=_options_text(first),
        )

    async def _refresh_card(self, job: Job, runs: list[Run]) -> None:
        """Edit the card when its phase changes; progress-only edits (elapsed time) are rationed,
        per card and across the workspace, because chat.update allows about 50 a minute."""
        if not job.thread_ts:
            return
        waiting = sum(1 for r in runs if r.state == "waiting")
        phase = f"{_job_phase(job, runs)}:{len(runs)}:{waiting}"
        now = self.clock()
        if (job.card_hash or "").split("|", 1)[0] == phase:
            if job.card_updated_at and now - job.card_updated_at < CARD_MIN_INTERVAL:
                return
            if not self._progress_edits.take(now):
                return
        card = self._card(job, runs)
        new_hash = _card_hash(card, phase)
        if new_hash == job.card_hash:
            return
        try:
            await self.slack.update(job.channel_id, job.thread_ts, card.payload())
        except SlackFailure as exc:
            if not exc.permanent:
                return  # the next look tries again
            log.warning("job %s: the card cannot be edited (%s)", job.id, exc.code)
        self.store.record_card_update(job.id, new_hash, now)

    async def _flush_posts(self, job: Job) -> None:
        """Send recorded messages in order, each at most once as far as Slack can tell us."""
        for post in self.store.open_posts(job.id):
            key = f"post:{post.id}"
            if post.state == "sending":
                # Sent before, answer unknown (crash, timeout): look before posting again.
                try:
                    found = await self.slack.find_post(
                        post.channel_id, post.thread_ts, key, since=post.created_at
                    )
                except SlackFailure as exc:
                    log.warning("post %s: could not check the thread (%s)", post.id, exc.code)
                    found = None  # err on the side of posting: a lost result is worse
                if found:
                    self.store.mark_post_done(post.id, found)
                    continue
            self.store.mark_post_sending(post.id, self.clock())
            try:
                ts = await self.slack.post(
                    post.channel_id,
                    post.payload,
                    thread_ts=post.thread_ts,
                    broadcast=post.broadcast,
                    key=key,
                )
            except SlackFailure as exc:
                if exc.permanent:
                    log.error("post %s (%s) dropped: Slack said %s", post.id, post.kind, exc.code)
                    self.store.mark_post_failed(post.id, exc.code, give_up=True)
                    continue
                raise
            self.store.mark_post_done(post.id, ts)
        self.store.clear_pending_posts(job.id)

    # ------------------------------------------------------------ Motion calls

    async def _send(self, job: Job, run: Run) -> float | None:
        """Send a waiting run. Recorded as "sending" first: a crash mid-call is never re-sent."""
        body = MotionRequest.from_json(run.request).to_body()
        is_followup = job.motion_job_id is not None
        self.store.mark_sending(
            run.id,
            baseline_completed_at=job.motion_completed_at if is_followup else None,
            baseline_url=job.motion_url if is_followup else None,
            now=self.clock(),
        )
        now = self.clock()
        try:
            if is_followup:
                assert job.motion_job_id is not None
                motion_job_id = await self.motion.followup(job.motion_job_id, body)
            else:
                motion_job_id = await self.motion.create(body)
        except OutcomeUnknown as exc:
            log.warning("job %s run %s: answer lost (%s)", job.id, run.number, exc)
            if is_followup:
                self.store.mark_verifying(run.id)
                return self.schedule.initial
            self._finish(
                job,
                run,
                "unknown",
                messages.outcome_unknown(
                    run_number=run.number,
                    followup=False,
                    run_id=run.id,
                    sandbox=job.sandbox,
                ),
                error=str(exc),
            )
            return None
        except Conflict as exc:
            if exc.job_status == "failed":
                self._finish(
                    job,
                    run,
                    "rejected",
                    messages.followup_on_failed(
                        job_prompt=job.prompt,
                        reply_prompt=run.request["prompt"],
                        sandbox=job.sandbox,
                        value=str(run.id),
                    ),
                    error=exc.message,
                    react=REACT_FAILED,
                )
                return None
            # The job moved on between our look and the call: the followup waits its turn.
            self.store.mark_waiting(run.id)
            self.store.record_poll(
                job.id,
                motion_status=exc.job_status or "running",
                completed_at=None,
                url=job.motion_url,
                now=now,
            )
            return await self._requeue_behind_running(job)
        except ServerRejected as exc:
            self._finish(
                job,
                run,
                "rejected",
                messages.motion_server_error(
                    run_number=run.number,
                    error=exc.message,
                    run_id=run.id,
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None
        except RateLimited as exc:
            return self._send_later(job, run, exc, exc.retry_after)
        except Transient as exc:
            return self._send_later(job, run, exc, None)
        except InsufficientCredits as exc:
            self._finish(
                job,
                run,
                "rejected",
                messages.insufficient_credits(
                    balance=exc.current_balance,
                    minimum=exc.minimum_required,
                    message=exc.message,
                    followup=is_followup,
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None
        except BadRequest as exc:
            self._finish(
                job,
                run,
                "rejected",
                messages.bad_request(
                    run_number=run.number,
                    details=exc.details,
                    message=exc.message,
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None
        except AuthenticationError as exc:
            self._stop(job, run, messages.auth_failed(sandbox=job.sandbox), exc)
            return None
        except NotFound as exc:
            self._stop(job, run, messages.job_not_found(sandbox=job.sandbox), exc)
            return None
        except MotionError as exc:
            self._finish(
                job,
                run,
                "rejected",
                messages.bad_request(
                    run_number=run.number,
                    details=[],
                    message=exc.message,
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None
        self.store.mark_running(run.id, job.id, motion_job_id, self.clock())
        self.store.set_due(job.id, None, errors=0)
        if run.reply_ts and run.reply_channel:
            self._react_later(run.reply_channel, run.reply_ts, REACT_SENT)
        return self.schedule.initial

    async def _requeue_behind_running(self, job: Job) -> float:
        errors = job.errors + 1
        self.store.set_due(job.id, None, errors=errors)
        return max(self.schedule.initial, self.schedule.error_delay(errors))

    def _send_later(
        self, job: Job, run: Run, exc: MotionError, retry_after: float | None
    ) -> float | None:
        """Motion was not reached or refused for now: nothing was started, try again later."""
        errors = job.errors + 1
        self.store.mark_waiting(run.id)
        if errors >= MAX_SEND_ATTEMPTS:
            self.store.set_due(job.id, None, errors=0)
            self._finish(
                job,
                run,
                "rejected",
                messages.motion_unreachable(
                    run_number=run.number,
                    error=exc.message,
                    run_id=run.id,
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None
        self.store.set_due(job.id, None, errors=errors)
        log.info(
            "job %s run %s: Motion unavailable (%s); retry %s", job.id, run.number, exc, errors
        )
        return self.schedule.error_delay(errors, retry_after)

    async def _poll(self, job: Job, run: Run) -> tuple[float | None, bool]:
        """One status call; returns (next delay, quiet). Quiet means nothing changed but the
        poll record (kept in `run` too), so the caller need not read the job back."""
        assert job.motion_job_id is not None
        try:
            status = await self.motion.status(job.motion_job_id)
        except RateLimited as exc:
            return self._poll_later(job, exc.retry_after), True
        except Transient:
            return self._poll_later(job, None), True
        except AuthenticationError as exc:
            self._stop(job, run, messages.auth_failed(sandbox=job.sandbox), exc)
            return None, False
        except NotFound as exc:
            self._stop(job, run, messages.job_not_found(sandbox=job.sandbox), exc)
            return None, False
        except InsufficientCredits as exc:  # Motion can run out of credits mid-generation
            self._finish(
                job,
                run,
                "failed",
                messages.insufficient_credits(
                    balance=exc.current_balance,
                    minimum=exc.minimum_required,
                    message=exc.message,
                    followup=run.kind == "followup",
                    sandbox=job.sandbox,
                ),
                error=exc.message,
                react=REACT_FAILED,
            )
            return None, False
        except MotionError:
            return self._poll_later(job, None), True
        now = self.clock()
        elapsed = now - (run.sent_at or now)
        fresh = run.seen_new or _is_new_run(run, status)
        self.store.record_poll(
            job.id,
            run.id if fresh else None,
            motion_status=status.status,
            completed_at=status.completed_at,
            url=status.download_url,
            now=now,
        )
        if not fresh:
            # Still the previous run's answer (Motion lags after a followup): never settle on it.
            if run.state == "verifying" and self._verify_polls(job, run) >= VERIFY_POLLS:
                self._finish(
                    job,
                    run,
                    "unknown",
                    messages.outcome_unknown(
                        run_number=run.number,
                        followup=True,
                        run_id=run.id,
                        sandbox=job.sandbox,
                    ),
                    error="answer lost; Motion shows no new run",
                )
                return None, False
            return self.schedule.initial, True
        quiet = run.state != "verifying"
        if run.state == "verifying":
            self.store.mark_running(run.id, job.id, job.motion_job_id, now)
            self.store.add_posts(
                job.id,
                run.id,
                [
                    NewPost(
                        "lost_answer_found",
                        messages.lost_answer_found(
                            run_number=run.number, sandbox=job.sandbox
                        ).payload(),
                    )
                ],
                now,
            )
            if run.reply_ts and run.reply_channel:
                self._react_later(run.reply_channel, run.reply_ts, REACT_SENT)
        if status.status == "awaiting_user_input" and run.motion_status != "awaiting_user_input":
            quiet = False
            self.store.add_posts(
                job.id,
                run.id,
                [
                    NewPost(
                        "awaiting_input",
                        messages.awaiting_input(
                            run_number=run.number, sandbox=job.sandbox
                        ).payload(),
                    )
                ],
                now,
            )
        if status.status == "completed" and run.motion_status != "completed":
            self._learn(run, status, now)
        run.seen_new, run.motion_status, run.last_poll_at = True, status.status, now

        if status.status == "failed":
            self._finish(
                job,
                run,
                "failed",
                messages.job_failed(
                    run_number=run.number,
                    error=status.error,
                    sandbox=job.sandbox,
                ),
                error=status.error or "failed",
                react=REACT_FAILED,
            )
            return None, False
        if status.status == "completed":
            if status.render_failed:
                self._finish(
                    job,
                    run,
                    "failed",
                    messages.render_failed(run_number=run.number, sandbox=job.sandbox),
                    error="render failed",
                )
                return None, False
            if status.download_url:
                await self._settle_result(job, run, status, elapsed)
                return None, False
            return self.schedule.next_delay(
                elapsed=elapsed, status=status.status, rendering=True
            ), quiet
        return self.schedule.next_delay(
            elapsed=elapsed, status=status.status, rendering=False, bucket=_bucket(run)
        ), quiet

    def _learn(self, run: Run, status: JobStatus, now: float) -> None:
        """Teach the poll schedule how long this run took to generate."""
        sent_at = run.sent_at or now
        seconds = generation_seconds(
            completed_at=_epoch(status.completed_at),
            sent_at=sent_at,
            previous_look=run.last_poll_at or sent_at,
            now=now,
        )
        self.store.record_generation_time(_bucket(run), seconds, now)
        self.schedule.learn(_bucket(run), seconds)

    def _verify_polls(self, job: Job, run: Run) -> int:
        return self.store.bump_verify(run.id)

    def _poll_later(self, job: Job, retry_after: float | None) -> float:
        errors = job.errors + 1
        self.store.set_due(job.id, None, errors=errors)
        self.store.count_status_call(job.id)
        return self.schedule.error_delay(errors, retry_after)

    async def _settle_result(self, job: Job, run: Run, status: JobStatus, elapsed: float) -> None:
        """Record the result and every message announcing it in one transaction."""
        assert status.download_url is not None and job.thread_ts is not None
        parts = messages.result_messages(
            requester=run.author or job.requester,
            run_number=run.number,
            download_url=status.download_url,
            sources=status.sources,
            expires_at=status.output.expires_at if status.output else None,
            sandbox=job.sandbox,
        )
        posts = [
            NewPost("result", part.payload(), broadcast=(i == 0)) for i, part in enumerate(parts)
        ]
        if self.notify_channel:
            link = await self.slack.permalink(job.channel_id, job.thread_ts)
            notice = messages.notify_message(
                requester=run.author or job.requester,
                prompt=run.request["prompt"],
                permalink=link,
                run_number=run.number,
                sandbox=job.sandbox,
            )
            posts.append(
                NewPost("notify", notice.payload(), channel_id=self.notify_channel, thread=False)
            )
        self.store.finish_run(
            run.id,
            job.id,
            state="done",
            posts=posts,
            now=self.clock(),
            download_url=status.download_url,
            completed_at=status.completed_at,
            expires_at=status.output.expires_at if status.output else None,
            sources=status.sources,
        )

    def _finish(
        self,
        job: Job,
        run: Run,
        state: str,
        message: Message,
        *,
        error: str,
        react: str | None = None,
    ) -> None:
        self.store.finish_run(
            run.id,
            job.id,
            state=state,
            error=error,
            now=self.clock(),
            posts=[NewPost(state, message.payload())],
        )
        if react and run.reply_ts and run.reply_channel:
            self._react_later(run.reply_channel, run.reply_ts, react)

    def _stop(self, job: Job, run: Run, message: Message, exc: MotionError) -> None:
        log.warning("job %s: Motion answered %s; no longer following it", job.id, exc.status)
        self.store.stop_job(
            job.id, run.id, exc.message, [NewPost("stopped", message.payload())], self.clock()
        )


def _bucket(run: Run) -> str:
    return str(run.request.get("duration") or ANY)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _is_new_run(run: Run, status: JobStatus) -> bool:
    """Does this status describe `run`, rather than the run before it? (See SPEC: never stale.)"""
    if run.kind != "followup" or (run.baseline_completed_at is None and run.baseline_url is None):
        return True
    if status.status != "completed":
        return True
    if status.completed_at and status.completed_at != run.baseline_completed_at:
        return True
    return bool(status.download_url) and status.download_url != run.baseline_url


def _run_label(run: Run, now: float) -> str:
    if run.state in ("running", "verifying"):
        if not run.seen_new:
            return messages.status_label("queued")
        if run.motion_status == "completed":
            return messages.status_label("rendering")
        return messages.status_label(run.motion_status or "queued", now - (run.sent_at or now))
    if run.state == "sending":
        return messages.status_label("queued")
    return messages.status_label(run.state)


def _job_phase(job: Job, runs: list[Run]) -> str:
    if job.state == "stopped":
        return "stopped"
    current = [r for r in runs if r.state not in ("retried",)]
    if not current:
        return "new"
    active = next((r for r in current if r.state in ACTIVE_RUN_STATES), None)
    run = active or current[-1]
    if run.state in ("running", "verifying"):
        if not run.seen_new:
            return "queued"
        return "rendering" if run.motion_status == "completed" else (run.motion_status or "queued")
    if run.state == "waiting":
        return "queued" if job.motion_job_id else "new"
    if run.state == "sending":
        return "queued"
    return run.state


def _job_label(job: Job, runs: list[Run], now: float) -> str:
    phase = _job_phase(job, runs)
    active = next((r for r in runs if r.state in ACTIVE_RUN_STATES), None)
    elapsed = now - active.sent_at if active and active.sent_at else None
    label = messages.status_label(phase, elapsed)
    waiting = sum(1 for r in runs if r.state == "waiting")
    if waiting and phase not in ("new",):
        label += f" · {waiting} followup{'s' if waiting != 1 else ''} waiting"
    return label


def _options_text(request: MotionRequest) -> str:
    parts = []
    if request.aspect:
        parts.append(f"aspect {request.aspect}")
    if request.duration:
        parts.append(f"duration {request.duration}")
    if request.style_url:
        parts.append("style reference")
    if request.attachments:
        parts.append(
            f"{len(request.attachments)} attachment{'s' if len(request.attachments) != 1 else ''}"
        )
    return " · ".join(parts)


def _card_hash(card: Message, phase: str) -> str:
    digest = hashlib.sha256(json.dumps(card.payload(), sort_keys=True).encode()).hexdigest()[:16]
    return f"{phase}|{digest}"
