"""The video in the thread: after a run's result message, its MP4 is shared into the job's
thread when it is at most UPLOAD_MAX_MB, streamed from Motion's CDN to Slack chunk by chunk.

Each upload is a row of the outbox (kind "upload", recorded with the result in one
transaction) but it never holds the in-order outbox: it starts once every message before it
went out, runs in the background, and a failure only costs the upload (a few attempts, then a
log line; the result's link stays; a download the guard refuses is given up at once). Once per
run across crashes: the Slack file id is recorded before the file is completed into the
thread, and an attempt that follows an unknown outcome first asks Slack where that file is
(`files.info`): shared means done, reserved but unshared means complete that same file,
unknown means no file was ever completed, so start afresh. The database away costs no attempt
(`_upload` waits for it); a file id that could not be recorded is never completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from bot.jobs.context import JobContext
from bot.jobs.videos import VideoUrls
from bot.motion import MotionError
from bot.motion.download import Download, Downloader, DownloadFailed
from bot.motion.download_guard import DownloadRefused
from bot.slack.out import SlackFailure
from bot.store import DatabaseUnavailable, Job, Post, PostState
from bot.store.base import leave_fence

log = logging.getLogger(__name__)
UPLOAD_ATTEMPTS = 3  # then the upload is given up (the link stays in the result)
RETRY_SECONDS = (2.0, 8.0)
STALE_SECONDS = 30.0  # another instance's upload whose heartbeat is older than this is dead
HEARTBEAT_SECONDS = 5.0
MB = 1024 * 1024
# Completing a reserved file fails with these when its bytes never all arrived.
INCOMPLETE_FILE_ERRORS = {"file_not_found", "invalid_arguments", "file_upload_incomplete"}


class Uploads:
    def __init__(self, ctx: JobContext, urls: VideoUrls, downloader: Downloader) -> None:
        self.ctx = ctx
        self.urls = urls
        self.downloader = downloader
        self._running: dict[int, asyncio.Task[None]] = {}  # post id → its upload here
        self._waiting: set[int] = set()  # jobs with an upload another instance may be running

    @property
    def max_bytes(self) -> int:
        return int(self.ctx.upload_max_mb * MB)

    def kick(self, job: Job) -> float | None:
        """Start the job's due uploads whose turn has come; returns when to look again (an
        upload another instance may still be running), or None."""
        if not job.pending_posts and job.id not in self._waiting:
            return None  # an open upload keeps the flag raised (`clear_pending_posts`)
        self._waiting.discard(job.id)
        store, now = self.ctx.store, self.ctx.clock()
        uploads = store.open_uploads(job.id)
        if not uploads:
            return None
        first_open = store.first_open_post_id(job.id)
        again: float | None = None
        for post in uploads:
            if post.id in self._running:
                continue
            if first_open is not None and first_open < post.id:
                continue  # its result message goes first: the next flush, then this

            if post.state == PostState.SENDING and not self._abandoned(post, now):
                wait = max(1.0, STALE_SECONDS - (now - (post.sent_at or now)))
                again = wait if again is None else min(again, wait)
                self._waiting.add(job.id)
                continue
            task = self.ctx.background.start(self._upload(job, post))
            self._running[post.id] = task
            task.add_done_callback(self._finished(post.id))
        return again

    def _finished(self, post_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._running.pop(post_id, None)

        return forget

    def _abandoned(self, post: Post, now: float) -> bool:
        """An upload marked as started that nobody is running: this instance's previous boot
        started it, or its uploader stopped keeping it fresh."""
        owner = post.uploader or ""
        if owner.split(":", 1)[0] == self.ctx.store.instance:
            return True
        return now - (post.sent_at or 0.0) > STALE_SECONDS

    def abandon(self) -> None:
        """At stop: uploads still running are left as "started", exactly as a kill leaves
        them; the next boot settles them (`_settle_known_file`) before anything else."""
        for task in list(self._running.values()):
            task.cancel()

    async def _upload(self, job: Job, post: Post) -> None:
        """A few attempts; never raises (an upload costs nothing but itself). The database away
        costs no attempt: the upload waits for it, then asks it where the upload got to (a
        file reserved before it went is settled as after a crash)."""
        leave_fence()  # this task's copy of the context only: the step keeps its fence
        file_id, known, attempt = post.slack_ts, True, 0
        while attempt < UPLOAD_ATTEMPTS:
            try:
                if not known:
                    file_id, known = self.ctx.store.upload_file_id(post.id), True
                if await self._attempt(job, post, file_id, attempt):
                    return
            except DatabaseUnavailable:  # said once by the store; this upload waits it out
                known = False
                await asyncio.sleep(self.ctx.store.availability.retry_delay())
                continue
            attempt, known = attempt + 1, False  # reserved before the failure?
            if attempt < UPLOAD_ATTEMPTS:
                await asyncio.sleep(RETRY_SECONDS[min(attempt - 1, len(RETRY_SECONDS) - 1)])
        with contextlib.suppress(DatabaseUnavailable):  # then the next boot tries again
            self._give_up(post, f"{UPLOAD_ATTEMPTS} attempts failed")

    async def _attempt(self, job: Job, post: Post, file_id: str | None, attempt: int) -> bool:
        """One attempt; True when the upload is settled (in the thread, or given up), False
        when it failed in a way another attempt may mend."""
        self.ctx.store.start_upload(post.id, self.ctx.clock())
        try:
            if file_id is not None and await self._settle_known_file(job, post, file_id):
                self.ctx.events.upload("uploaded")
                return True
            outcome = await self._fresh_upload(job, post, fresh_url=attempt > 0)
        except DownloadRefused as refused:  # not the CDN's fault: trying again changes nothing
            self._give_up(post, f"download refused: {refused.reason}")
            return True
        except (SlackFailure, DownloadFailed, MotionError) as exc:
            if isinstance(exc, SlackFailure) and exc.permanent:
                self._give_up(post, f"Slack said {exc.code}")
                return True
            log.info(
                "upload %s (job %s run %s) attempt %s failed: %s",
                post.id, job.id, post.run_number, attempt + 1, _reason(exc),
            )  # fmt: skip
            if attempt + 1 < UPLOAD_ATTEMPTS:
                self.ctx.events.upload("retried")
            return False
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("upload %s failed unexpectedly", post.id)
            self._give_up(post, "unexpected error")
            return True
        if outcome is not None:
            self._give_up(post, outcome, level=logging.INFO)
        else:
            self.ctx.events.upload("uploaded")
        return True

    async def _settle_known_file(self, job: Job, post: Post, file_id: str) -> bool:
        """An earlier attempt reserved `file_id` and its outcome is unknown: True when the
        video is in the thread now. Shared: done. Otherwise that same file is completed here:
        if its bytes had all arrived, this puts it in the thread and a late completion from the
        earlier attempt is refused (an id completes once); if they had not, Slack says
        file_not_found and a fresh upload starts (that file can never appear)."""
        slack = self.ctx.slack_of(job)
        if await slack.find_shared_file(post.channel_id, file_id):
            self.ctx.store.mark_post_done(post.id, file_id)
            log.info("upload %s: file %s was already in the thread", post.id, file_id)
            return True
        assert post.thread_ts is not None
        title = str(post.payload.get("title") or "")
        try:
            await slack.complete_file(post.channel_id, post.thread_ts, file_id, title)
        except SlackFailure as exc:
            if exc.code in INCOMPLETE_FILE_ERRORS:
                return False
            if exc.code != "file_already_completed":
                raise
        self.ctx.store.mark_post_done(post.id, file_id)
        log.info("upload %s: completed file %s into the thread", post.id, file_id)
        return True

    async def _fresh_upload(self, job: Job, post: Post, *, fresh_url: bool) -> str | None:
        """Stream the MP4 into the thread; the reason it is not uploaded, or None when done."""
        url = str(post.payload["url"])
        if fresh_url:  # a retry: the recorded URL may have expired meanwhile
            found = self.urls.finished_run(job.id, int(post.payload["run"]))
            if found is not None:
                url = await self.urls.current(*found)
        async with self.downloader.open(url) as download:
            if download.length is None:
                return "the download announced no length"
            if download.length > self.max_bytes:
                return f"{download.length / MB:.1f} MB is over UPLOAD_MAX_MB"
            if download.length == 0:
                return "the download is empty"
            assert post.thread_ts is not None
            file_id = await self.ctx.slack_of(job).upload_file(
                post.channel_id,
                post.thread_ts,
                filename=str(post.payload["filename"]),
                title=str(post.payload["title"]),
                length=download.length,
                chunks=self._chunks(post, download),
                on_file_id=lambda fid: self.ctx.store.record_upload_file(post.id, fid),
            )
        self.ctx.store.mark_post_done(post.id, file_id)
        log.info("upload %s: run %s of job %s is in the thread", post.id, post.run_number, job.id)
        return None

    async def _chunks(self, post: Post, download: Download) -> AsyncIterator[bytes]:
        """The body as it arrives, keeping the upload marked as alive while it streams."""
        touched = self.ctx.clock()
        async for chunk in download.chunks():
            now = self.ctx.clock()
            if now - touched > HEARTBEAT_SECONDS:
                with contextlib.suppress(DatabaseUnavailable):  # only a sign of life: go on
                    self.ctx.store.touch_upload(post.id, now)
                touched = now
            yield chunk

    def _give_up(self, post: Post, reason: str, *, level: int = logging.WARNING) -> None:
        """Not uploaded: skipped when it is the video's own doing (`level` INFO: no length,
        empty, too large), failed otherwise."""
        log.log(level, "upload %s (run %s): not uploaded: %s", post.id, post.run_number, reason)
        self.ctx.store.mark_post_failed(post.id, reason, give_up=True)
        self.ctx.events.upload("skipped" if level == logging.INFO else "failed")


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackFailure):
        return f"Slack {exc.code}"
    if isinstance(exc, DownloadFailed):
        return f"download {exc.reason}"
    return f"Motion {type(exc).__name__}"
