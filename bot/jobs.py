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
from bot.store import ACTIVE_RUN_STATES, Job, NewPost, Post, Run, Store

log = logging.getLogger(__name__)

REACT_QUEUED = "hourglass_flowing_sand"
REACT_SENT = "arrow_forward"
REACT_FAILED = "x"
CARD_MIN_INTERVAL = 15.0  # seconds between progress-only edits of one card
PROGRESS_EDITS_PER_MINUTE = 30  # across all cards: chat.update is Tier 3 (~50/min a workspace)
MAX_SEND_ATTEMPTS = 6  # Motion unreachable before sending: retried with backoff, then reported
MAX_POST_ATTEMPTS = 8  # a Slack post failing this often, for this long, is dropped (and logged)
POST_GIVE_UP_SECONDS = 6 * 3600
SENDING_GRACE = 60.0  # longer than any Motion call may take (timeout + slot wait)
MAX_STEPS = 20  # runs settled in one look before yielding to other jobs
VERIFY_LOOKS = 40  # look this many initial waits (2 min by default) for a lost followup
HIDDEN_STATES = ("retried",)  # superseded by the run "Send it again" made
BLOCK_ERRORS = {"invalid_blocks", "msg_blocks_too_long", "invalid_blocks_format"}


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
        self._reacting: dict[str, asyncio.Task[None]] = {}  # message ts → its latest reaction
        self.stopping = False
        self._backed_off: set[int] = set()  # jobs whose current look hit a failure

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
            if job.state == "stopped":
                raise UsageError(messages.STOPPED_JOB_REPLY)
            request = parse_request(text)
        except UsageError as exc:
            post = NewPost.of(messages.usage_error(str(exc), job.sandbox))
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
        if not self.store.has_active_run(job.id):
            self.wake(job.id)  # a busy job sends it after its run; waking would cost a poll
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
            runs = [r for r in self.store.runs(job.id) if r.state not in HIDDEN_STATES]
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
        """React without holding anything up; one message's reactions land in order (⏳ first)."""
        previous = self._reacting.get(ts)

        async def react() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await self.slack.react(channel, ts, name)

        task = self._in_background(react())
        self._reacting[ts] = task
        task.add_done_callback(
            lambda done: self._reacting.pop(ts, None) if self._reacting.get(ts) is done else None
        )

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

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
            self._settle_interrupted(self._job(run.job_id), run)
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
        try:
            if job.state == "new":
                delay = await self._open_thread(job)
                job = self._job(job_id)
                if job.state == "new" or job.state == "abandoned":
                    return delay
            if job.pending_posts:
                await self._flush_posts(job)
            runs = self.store.runs(job_id)
            delay = None
            for _ in range(MAX_STEPS):  # a settled run frees the job for its next followup
                active = next((r for r in runs if r.state in ACTIVE_RUN_STATES), None)
                if active is not None:
                    if active.state == "sending":
                        # A call interrupted in this process (cancelled, or a failed write
                        # after it): once its deadline has passed, settle it as a restart would.
                        sent_at = active.sent_at if active.sent_at is not None else 0.0
                        if self.clock() - sent_at < SENDING_GRACE:
                            delay = SENDING_GRACE
                            break
                        self._settle_interrupted(job, active)
                        job, runs = self._job(job_id), self.store.runs(job_id)
                        continue
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
                if self.stopping:  # no new billable call in the last seconds before exit
                    delay = 0.0
                    break
                delay = await self._send(job, waiting)
                job, runs = self._job(job_id), self.store.runs(job_id)
                if any(
                    r.id == waiting.id and r.state in (*ACTIVE_RUN_STATES, "waiting") for r in runs
                ):
                    break
            else:
                delay = 0.0  # still more to do: look again at once
            await self._refresh_card(job, runs)
            if job.pending_posts:
                await self._flush_posts(self._job(job_id))
        except SlackFailure as exc:
            return self._backoff(job_id, f"Slack {exc.code}")
        finally:
            backed_off = job_id in self._backed_off
            self._backed_off.discard(job_id)
        if job.errors and not backed_off:
            self.store.set_errors(job_id, 0)  # a clean look ends a run of failures
        if job.pending_posts:
            self.store.clear_pending_posts(job_id)  # only now: the card shows the change too
        return delay

    def _backoff(self, job_id: int, reason: str, retry_after: float | None = None) -> float:
        """Count one more consecutive failure for the job and wait accordingly."""
        errors = self.store.add_error(job_id)
        self._backed_off.add(job_id)
        log.info("job %s: %s; retry %s", job_id, reason, errors)
        return self.schedule.error_delay(errors, retry_after)

    def _job(self, job_id: int) -> Job:
        job = self.store.job(job_id)
        assert job is not None
        return job

    # ------------------------------------------------------------ the thread

    async def _open_thread(self, job: Job) -> float | None:
        """Post the card (joining a public channel first); None when the thread exists."""
        channel = job.channel_id
        if channel not in self._joined:
            try:
                if (await self.slack.join(channel)).member:
                    self._joined.add(channel)
            except SlackFailure as exc:
                if not exc.permanent:
                    return self._backoff(job.id, f"conversations.join: {exc.code}")
                # Joining is refused (an admin setting, say): posting the card decides.
        card = self._card(job, self.store.runs(job.id))
        key = f"card:{job.id}"
        try:
            ts = None
            if job.card_hash == "posting":  # an earlier attempt may have reached Slack
                ts = await self.slack.find_post(channel, None, key, since=job.created_at)
            if ts is None:
                self.store.record_card_update(job.id, "posting", self.clock())
                ts = await self.slack.post(channel, card.payload(), key=key, kind="card")
        except SlackFailure as exc:
            if not exc.permanent:
                return self._backoff(job.id, f"posting the card: {exc.code}")
            self._joined.discard(channel)
            log.info("job %s: cannot post in %s (%s): invite hint", job.id, channel, exc.code)
            self.store.abandon_job(job.id, self.clock())
            if job.response_url:
                hint = messages.invite_hint(
                    channel_is_dm=channel.startswith("D"), sandbox=job.sandbox
                )
                await self.slack.respond(job.response_url, hint.payload())
            return None
        origin_posts: list[NewPost] = []
        if job.origin_job_id:
            link = await self.slack.permalink(channel, ts)
            notice = messages.new_job_link(permalink=link, sandbox=job.sandbox)
            origin_posts.append(NewPost.of(notice))
        self.store.record_card(
            job.id, ts, channel, _card_hash(card, "new"), self.clock(), origin_posts=origin_posts
        )
        if job.origin_job_id:
            self.wake(job.origin_job_id)
        return None

    def _card(self, job: Job, runs: list[Run]) -> Message:
        visible = [r for r in runs if r.state not in HIDDEN_STATES]
        lines = [
            RunLine(r.number, r.state, messages.status_label(_run_phase(r)), r.download_url)
            for r in visible
        ]
        first = MotionRequest.from_json(runs[0].request) if runs else MotionRequest(job.prompt)
        return messages.job_card(
            requester=job.requester,
            prompt=job.prompt,
            status=_job_label(job, visible, self.clock()),
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
                raise  # the job backs off and edits the card at its next look
            log.warning("job %s: the card cannot be edited (%s)", job.id, exc.code)
        self.store.record_card_update(job.id, new_hash, now)

    async def _flush_posts(self, job: Job) -> None:
        """Send recorded messages in order, each once as far as Slack can tell us."""
        for post in self.store.open_posts(job.id):
            key = f"post:{post.id}"
            if post.state == "sending":
                # Sent before, answer unknown (crash, timeout): look before posting again.
                try:
                    found = await self.slack.find_post(
                        post.channel_id, post.thread_ts, key, since=post.created_at
                    )
                except SlackFailure as exc:
                    if not exc.permanent:
                        raise  # ask again later rather than risk a second copy
                    log.warning("post %s: cannot check the thread (%s)", post.id, exc.code)
                    found = None  # err on the side of posting: a lost result is worse
                if found:
                    self.store.mark_post_done(post.id, found)
                    continue
            if (
                post.attempts >= MAX_POST_ATTEMPTS
                and self.clock() - post.created_at > POST_GIVE_UP_SECONDS
            ):
                log.error(
                    "post %s (%s) dropped after %s attempts", post.id, post.kind, post.attempts
                )
                self.store.mark_post_failed(post.id, "too many attempts", give_up=True)
                continue
            self.store.mark_post_sending(post.id, self.clock())
            try:
                ts = await self._post(post, key)
            except SlackFailure as exc:
                if exc.permanent:
                    log.error("post %s (%s) dropped: Slack said %s", post.id, post.kind, exc.code)
                    self.store.mark_post_failed(post.id, exc.code, give_up=True)
                    continue
                raise
            self.store.mark_post_done(post.id, ts)

    async def _post(self, post: Post, key: str) -> str:
        """Post; if Slack refuses the layout, the words (which carry every link) still go out."""
        where: dict[str, Any] = {
            "thread_ts": post.thread_ts,
            "broadcast": post.broadcast,
            "key": key,
            "kind": post.kind,
            "run": post.run_number,
        }
        try:
            return await self.slack.post(post.channel_id, post.payload, **where)
        except SlackFailure as exc:
            if exc.code not in BLOCK_ERRORS or not post.payload.get("blocks"):
                raise
            log.warning("Slack refused a layout (%s); posting it as plain text", exc.code)
            text_only = {"text": post.payload.get("text") or ""}
            return await self.slack.post(post.channel_id, text_only, **where)

    # ------------------------------------------------------------ Motion calls

    async def _send(self, job: Job, run: Run) -> float | None:
        """Send a waiting run. Recorded as "sending" first: a crash mid-call is never re-sent."""
        if self.motion.writes_full():  # slow writes: do not hold a poller task while waiting
            return self.schedule.initial / 3
        followup = run.kind == "followup"
        baseline: tuple[str | None, str | None] = (None, None)
        if followup:
            if job.motion_job_id is None:
                self._reject(job, run, messages.nothing_to_refine(sandbox=job.sandbox), "no job")
                return None
            ready = await self._ready_for_followup(job, run)
            if not isinstance(ready, tuple):
                return ready
            if self.stopping:
                return 0.0
            baseline = ready
        self.store.mark_sending(
            run.id, baseline_completed_at=baseline[0], baseline_url=baseline[1], now=self.clock()
        )
        body = MotionRequest.from_json(run.request).to_body()
        try:
            if followup:
                assert job.motion_job_id is not None
                motion_job_id = await self.motion.followup(job.motion_job_id, body)
            else:
                motion_job_id = await self.motion.create(body)
        except (OutcomeUnknown, ValueError, OSError) as exc:  # answer lost or unreadable
            log.warning("job %s run %s: answer lost (%s)", job.id, run.number, exc)
            if followup:
                self.store.mark_verifying(run.id)
                return self.schedule.initial
            self._create_unknown(job, run, str(exc))
            return None
        except Conflict as exc:
            if exc.job_status == "failed":
                offer = messages.followup_on_failed(sandbox=job.sandbox, value=str(run.id))
                self._reject(job, run, offer, exc.message)
                return None
            # The job moved on between our look and the call: the followup waits its turn.
            return self._send_later(job, run, exc)
        except ServerRejected as exc:
            retry = messages.motion_server_error(
                run_number=run.number, error=exc.message, run_id=run.id, sandbox=job.sandbox
            )
            self._reject(job, run, retry, exc.message)
            return None
        except Transient as exc:  # nothing reached Motion, or it said "not now"
            return self._send_later(job, run, exc)
        except InsufficientCredits as exc:
            credits = _credits_message(job, exc, followup=followup)
            self._reject(job, run, credits, exc.message)
            return None
        except (AuthenticationError, NotFound) as exc:
            self._stop(job, run, exc)
            return None
        except MotionError as exc:  # 400 and anything else Motion refused outright
            details = exc.details if isinstance(exc, BadRequest) else []
            refused = messages.bad_request(
                run_number=run.number, details=details, message=exc.message, sandbox=job.sandbox
            )
            self._reject(job, run, refused, exc.message)
            return None
        self.store.mark_running(run.id, job.id, motion_job_id, self.clock())
        if run.reply_ts and run.reply_channel:
            self._react_later(run.reply_channel, run.reply_ts, REACT_SENT)
        return self.schedule.initial

    async def _ready_for_followup(
        self, job: Job, run: Run
    ) -> tuple[str | None, str | None] | float | None:
        """Look at the job right before a followup: Motion takes followups only on a completed
        job, and the previous run's video must be ready (announced) first. Returns the baseline
        (completed_at, URL) that tells the new run's answers from the old one's, or when to
        look again (None: the job is stopped)."""
        assert job.motion_job_id is not None
        try:
            status = await self.motion.status(job.motion_job_id)
        except RateLimited as exc:
            return self._backoff(job.id, "429 before a followup", exc.retry_after)
        except (AuthenticationError, NotFound) as exc:
            self._stop(job, run, exc)
            return None
        except InsufficientCredits as exc:
            credits = _credits_message(job, exc, followup=True)
            self._reject(job, run, credits, exc.message)
            return None
        except MotionError as exc:
            return self._backoff(job.id, f"status before a followup: {exc.message}")
        self.store.record_poll(
            job.id, None, motion_status=status.status, completed_at=status.completed_at,
            url=status.download_url, now=self.clock(),
        )  # fmt: skip
        if status.status == "failed" or status.render_failed or status.download_url:
            return status.completed_at, status.download_url  # failed: Motion will say 409
        # Still running (someone used the web app) or rendering: the followup waits its turn.
        return self.schedule.next_delay(
            elapsed=0.0, status=status.status, rendering=status.status == "completed"
        )

    def _send_later(self, job: Job, run: Run, exc: MotionError) -> float | None:
        """Motion was not reached or said "not now": nothing started; retry, then report."""
        self.store.mark_waiting(run.id)
        if self.store.add_send_attempt(run.id) >= MAX_SEND_ATTEMPTS:
            unreachable = messages.motion_unreachable(
                run_number=run.number, error=exc.message, run_id=run.id, sandbox=job.sandbox
            )
            self._reject(job, run, unreachable, exc.message)
            return None
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        return self._backoff(job.id, f"Motion unavailable ({exc.message})", retry_after)

    async def _poll(self, job: Job, run: Run) -> tuple[float | None, bool]:
        """One status call; returns (next delay, quiet). Quiet means nothing changed but the
        poll record (kept in `run` too), so the caller need not read the job back."""
        assert job.motion_job_id is not None
        try:
            status = await self.motion.status(job.motion_job_id)
        except RateLimited as exc:
            return self._backoff(job.id, "429 on a status call", exc.retry_after), True
        except (AuthenticationError, NotFound) as exc:
            self._stop(job, run, exc)
            return None, False
        except InsufficientCredits as exc:  # Motion can run out of credits mid-generation
            credits = _credits_message(job, exc, followup=run.kind == "followup")
            self._finish(job, run, "failed", credits, error=exc.message, react=REACT_FAILED)
            return None, False
        except MotionError as exc:  # transient: timeouts, 5xx, garbled answers
            return self._backoff(job.id, f"status call: {exc.message}"), True
        now = self.clock()
        elapsed = now - (run.sent_at if run.sent_at is not None else now)
        if not (run.seen_new or _is_new_run(run, status)):
            # Still the previous run's answer (Motion lags after a followup): never settle on it.
            self.store.record_poll(
                job.id, None, motion_status=status.status, completed_at=status.completed_at,
                url=status.download_url, now=now,
            )  # fmt: skip
            if run.state == "verifying" and elapsed >= VERIFY_LOOKS * self.schedule.initial:
                unknown = messages.outcome_unknown(
                    run_number=run.number, followup=True, run_id=run.id, sandbox=job.sandbox
                )
                self._finish(job, run, "unknown", unknown, error="answer lost; no new run seen")
                return None, False
            if elapsed < VERIFY_LOOKS * self.schedule.initial:
                return self.schedule.initial, True
            # Accepted, yet still shown as the previous run for long: keep looking, less often.
            return self.schedule.next_delay(
                elapsed=elapsed, status="running", rendering=False
            ), True
        posts: list[NewPost] = []
        if run.state == "verifying":
            found = messages.lost_answer_found(run_number=run.number, sandbox=job.sandbox)
            posts.append(NewPost.of(found))
            if run.reply_ts and run.reply_channel:
                self._react_later(run.reply_channel, run.reply_ts, REACT_SENT)
        if status.status == "awaiting_user_input" and run.motion_status != "awaiting_user_input":
            notice = messages.awaiting_input(run_number=run.number, sandbox=job.sandbox)
            posts.append(NewPost.of(notice))
        if status.status == "completed" and run.motion_status != "completed":
            self._learn(run, status, now)
        self.store.record_poll(
            job.id, run.id, motion_status=status.status, completed_at=status.completed_at,
            url=status.download_url, now=now, posts=posts,
            run_state="running" if run.state == "verifying" else None,
        )  # fmt: skip
        quiet = not posts and run.state != "verifying"
        run.seen_new, run.motion_status, run.last_poll_at = True, status.status, now

        if status.status == "failed":
            failed = messages.job_failed(
                run_number=run.number, error=status.error, sandbox=job.sandbox
            )
            self._finish(
                job, run, "failed", failed, error=status.error or "failed", react=REACT_FAILED
            )
            return None, False
        if status.status == "completed":
            if status.render_failed:
                failed = messages.render_failed(run_number=run.number, sandbox=job.sandbox)
                self._finish(job, run, "failed", failed, error="render failed")
                return None, False
            if status.download_url:
                await self._settle_result(job, run, status)
                return None, False
            rendering = self.schedule.next_delay(
                elapsed=elapsed, status="completed", rendering=True, key=run.id
            )
            return rendering, quiet
        return self.schedule.next_delay(
            elapsed=elapsed,
            status=status.status,
            rendering=False,
            bucket=_bucket(run),
            key=run.id,
        ), quiet

    def _learn(self, run: Run, status: JobStatus, now: float) -> None:
        """Teach the poll schedule how long this run took to generate."""
        sent_at = run.sent_at if run.sent_at is not None else now
        seconds = generation_seconds(
            completed_at=_epoch(status.completed_at),
            sent_at=sent_at,
            previous_look=run.last_poll_at or sent_at,
            now=now,
        )
        self.store.record_generation_time(_bucket(run), seconds, now)
        self.schedule.learn(_bucket(run), seconds, key=run.id)

    async def _settle_result(self, job: Job, run: Run, status: JobStatus) -> None:
        """Record the result and every message announcing it in one transaction."""
        assert status.download_url is not None and job.thread_ts is not None
        expires_at = status.output.expires_at if status.output else None
        parts = messages.result_messages(
            requester=run.author or job.requester,
            run_number=run.number,
            download_url=status.download_url,
            sources=status.sources,
            expires_at=expires_at,
            sandbox=job.sandbox,
        )
        posts = [NewPost.of(part, broadcast=(i == 0)) for i, part in enumerate(parts)]
        if self.notify_channel:
            link = await self.slack.permalink(job.channel_id, job.thread_ts)
            notice = messages.notify_message(
                requester=run.author or job.requester,
                prompt=run.request["prompt"],
                permalink=link,
                run_number=run.number,
                sandbox=job.sandbox,
            )
            posts.append(NewPost.of(notice, channel_id=self.notify_channel, thread=False))
        self.store.finish_run(
            run.id,
            job.id,
            state="done",
            posts=posts,
            now=self.clock(),
            download_url=status.download_url,
            completed_at=status.completed_at,
            expires_at=expires_at,
            sources=status.sources,
        )

    def _finish(self, job: Job, run: Run, state: str, message: Message, *, error: str,
                react: str | None = None) -> None:  # fmt: skip
        self.store.finish_run(
            run.id, job.id, state=state, error=error, now=self.clock(),
            posts=[NewPost.of(message)],
        )  # fmt: skip
        if react and run.reply_ts and run.reply_channel:
            self._react_later(run.reply_channel, run.reply_ts, react)

    def _settle_interrupted(self, job: Job, run: Run) -> None:
        """A Motion write whose answer this process never saw: a followup can be checked
        against the job's status; a create cannot, so its thread is told."""
        if run.kind == "followup" and job.motion_job_id:
            self.store.mark_verifying(run.id)
            return
        log.warning("job %s: the create of run %s was interrupted", job.id, run.number)
        self._create_unknown(job, run, "interrupted before Motion answered")

    def _create_unknown(self, job: Job, run: Run, error: str) -> None:
        """A create whose answer never came: say so, offer a resend, never resend alone."""
        unknown = messages.outcome_unknown(
            run_number=run.number, followup=False, run_id=run.id, sandbox=job.sandbox
        )
        self._finish(job, run, "unknown", unknown, error=error)

    def _reject(self, job: Job, run: Run, message: Message, error: str) -> None:
        """The run was not started; its reply (if any) gets the "failed" reaction."""
        self._finish(job, run, "rejected", message, error=error, react=REACT_FAILED)

    def _stop(self, job: Job, run: Run, exc: MotionError) -> None:
        """Motion no longer answers for this job (401: the key; 404: the job)."""
        log.warning("job %s: Motion answered %s; no longer following it", job.id, exc.status)
        if isinstance(exc, AuthenticationError):
            message = messages.auth_failed(sandbox=job.sandbox)
        else:
            message = messages.job_not_found(sandbox=job.sandbox)
        self.store.stop_job(job.id, run.id, exc.message, [NewPost.of(message)], self.clock())
        if run.reply_ts and run.reply_channel:
            self._react_later(run.reply_channel, run.reply_ts, REACT_FAILED)


def _credits_message(job: Job, exc: InsufficientCredits, *, followup: bool) -> Message:
    """402, at create or during generation: the numbers come from Motion's body."""
    return messages.insufficient_credits(
        balance=exc.current_balance,
        minimum=exc.minimum_required,
        message=exc.message,
        followup=followup,
        sandbox=job.sandbox,
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
    """Does this status describe `run`, rather than the run before it? (SPEC: never stale.)

    Motion's `completed_at` decides when both sides have one; the URL is compared (without its
    query string, which a signing CDN may change on every call) only when they do not."""
    baseline_completed, baseline_url = run.baseline_completed_at, run.baseline_url
    if run.kind != "followup" or (baseline_completed is None and baseline_url is None):
        return True
    if status.status != "completed":
        return True
    if status.completed_at and baseline_completed:
        return status.completed_at != baseline_completed
    url = status.download_url
    return bool(url) and _strip_query(url) != _strip_query(baseline_url or "")


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _run_phase(run: Run) -> str:
    """The label key for one run, from what is known of it."""
    if run.state in ("running", "verifying"):
        if not run.seen_new:
            return "queued"
        return "rendering" if run.motion_status == "completed" else (run.motion_status or "queued")
    if run.state == "sending":
        return "queued"
    return run.state


def _job_phase(job: Job, runs: list[Run]) -> str:
    if job.state == "stopped":
        return "stopped"
    current = [r for r in runs if r.state not in HIDDEN_STATES]
    if not current:
        return "new"
    run = next((r for r in current if r.state in ACTIVE_RUN_STATES), None) or current[-1]
    if run.state == "waiting":
        return "queued" if job.motion_job_id else "new"
    return _run_phase(run)


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
