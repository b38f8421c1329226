"""The outbox's sender: what was recorded for Slack goes out in order, once as far as Slack
can tell. chat.postMessage has no idempotency key, so every post carries a metadata key, and a
post whose answer was never seen is looked for in the thread before it is sent again."""

from __future__ import annotations

import logging

from bot.jobs.context import JobContext
from bot.slack.out import SlackFailure
from bot.store import STEP_KIND, Job, Post, PostState

log = logging.getLogger(__name__)
MAX_POST_ATTEMPTS = 8  # a Slack post failing this often, for this long, is dropped (and logged)
POST_GIVE_UP_SECONDS = 6 * 3600


class Outbox:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    async def flush(self, job: Job) -> None:
        """Send the job's recorded messages; a transient Slack failure propagates (the job
        backs off and the rest waits, in order)."""
        store, slack = self.ctx.store, self.ctx.slack_of(job)
        for post in await store.read_off_loop(store.open_posts, job.id):
            if post.kind == STEP_KIND:
                await self.end_step(job, post)
                continue
            key = f"post:{post.id}"
            if post.state == PostState.SENDING:
                # Sent before, answer unknown (crash, timeout): look before posting again.
                try:
                    found = await slack.find_post(
                        post.channel_id, post.thread_ts, key, since=post.created_at
                    )
                except SlackFailure as exc:
                    if not exc.permanent:
                        raise  # ask again later rather than risk a second copy
                    log.warning("post %s: cannot check the thread (%s)", post.id, exc.code)
                    found = None  # err on the side of posting: a lost result is worse
                if found:
                    store.mark_post_done(post.id, found)
                    continue
            if (
                post.attempts >= MAX_POST_ATTEMPTS
                and self.ctx.clock() - post.created_at > POST_GIVE_UP_SECONDS
            ):
                log.error(
                    "post %s (%s) dropped after %s attempts", post.id, post.kind, post.attempts
                )
                await store.off_loop(
                    store.mark_post_failed, post.id, "too many attempts", give_up=True
                )
                continue
            await store.off_loop(store.mark_post_sending, post.id, self.ctx.clock())
            try:
                ts = await slack.post(
                    post.channel_id,
                    post.payload,
                    thread_ts=post.thread_ts,
                    broadcast=post.broadcast,
                    key=key,
                    kind=post.kind,
                    run=post.run_number,
                )
            except SlackFailure as exc:
                if exc.permanent:
                    log.error("post %s (%s) dropped: Slack said %s", post.id, post.kind, exc.code)
                    await store.off_loop(store.mark_post_failed, post.id, exc.code, give_up=True)
                    continue
                raise
            await store.off_loop(store.mark_post_done, post.id, ts)

    async def end_step(self, job: Job, post: Post) -> None:
        """Complete (or fail) a Workflow Builder step. Slack keeps the execution's state, so a
        call whose answer was lost is simply made again: a second one answers that the
        execution already ended, which is taken as done."""
        store, payload = self.ctx.store, post.payload
        execution_id = str(payload.get("execution_id") or "")
        if (
            post.attempts >= MAX_POST_ATTEMPTS
            and self.ctx.clock() - post.created_at > POST_GIVE_UP_SECONDS
        ):
            log.error(
                "workflow step %s: its end dropped after %s attempts", execution_id, post.attempts
            )
            await store.off_loop(store.mark_post_failed, post.id, "too many attempts", give_up=True)
            return
        store.mark_post_sending(post.id, self.ctx.clock())
        try:
            completed = await self.ctx.slack_of(job).complete_step(
                execution_id, outputs=payload.get("outputs"), error=payload.get("error")
            )
        except SlackFailure as exc:
            if exc.permanent:
                log.error("workflow step %s: Slack refused its end (%s)", execution_id, exc.code)
                await store.off_loop(store.mark_post_failed, post.id, exc.code, give_up=True)
                return
            raise
        log.info(
            "workflow step %s: %s%s", execution_id,
            "failed" if payload.get("error") else "completed",
            "" if completed else " (it had already ended)",
        )  # fmt: skip
        store.mark_post_done(post.id, None)
