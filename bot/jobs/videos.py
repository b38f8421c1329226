"""Where a run's MP4 can be downloaded now, and the app's own links that lead there.

Motion's download URLs are signed and expire, so a link kept in a thread must be resolved when
it is opened: the run that is still Motion's latest output gets the URL Motion answers now; a
run a later one has replaced gets the URL recorded for it (Motion no longer answers one for it).
Status answers are kept a few seconds, and concurrent askers for the same job share one call,
so a burst of clicks on a link costs Motion one status call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.jobs.bounds import OtherWorkspace
from bot.jobs.settings import MotionRoutes
from bot.links import BadToken, LinkSigner
from bot.motion import JobStatus, MotionClient, MotionRoute, MotionStatus
from bot.store import Job, Run, RunState, Store

VIDEO_LINK_KIND = "video"
STATUS_CACHE_SECONDS = 5.0  # long enough for a burst of clicks, short next to a URL's life


@dataclass(frozen=True)
class VideoRef:
    """What a /v/ token names: one run of one job."""

    job_id: int
    run_number: int
    team_id: str | None  # None: a link signed before links named their workspace


class VideoLinks:
    """`PUBLIC_URL/v/<token>` links: signed, never expiring (the token names a run, nothing
    secret, and the redirect is only ever to Motion's own URL for it)."""

    def __init__(
        self, signer: LinkSigner, public_url: str | None, *, require_team: bool = False
    ) -> None:
        """`require_team` (many workspaces): a link signed before links named their workspace
        serves nothing, since job ids of a forgotten workspace may be another's later."""
        self.signer = signer
        self.public_url = public_url
        self.require_team = require_team

    def link(self, job_id: int, run_number: int, team_id: str) -> str | None:
        """The lasting link for a run (None without PUBLIC_URL: Motion's URL is shown). It
        names the job's workspace too, so it serves only while the job is that workspace's."""
        if self.public_url is None:
            return None
        payload = {"j": job_id, "r": run_number, "t": team_id}
        token = self.signer.sign(VIDEO_LINK_KIND, payload, None)
        return f"{self.public_url}/v/{token}"

    def read(self, token: str) -> VideoRef:
        """The run a token names; BadToken if this app did not sign it as a video link."""
        payload = self.signer.verify(VIDEO_LINK_KIND, token)
        job_id, run_number, team_id = payload.get("j"), payload.get("r"), payload.get("t")
        if not isinstance(job_id, int) or not isinstance(run_number, int):
            raise BadToken("payload is not a video")
        if team_id is not None and not isinstance(team_id, str):
            raise BadToken("payload is not a video")
        if team_id is None and self.require_team:
            raise BadToken("a link that names no workspace")
        return VideoRef(job_id, run_number, team_id)


class VideoUrls:
    def __init__(
        self,
        store: Store,
        motion: MotionClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = STATUS_CACHE_SECONDS,
        routes: MotionRoutes | None = None,
    ) -> None:
        """`routes`: each job's workspace key (None: the client's own, for every job)."""
        self.store = store
        self.motion = motion
        self.routes = routes
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._answers: dict[str, tuple[float, JobStatus]] = {}
        self._asking: dict[str, asyncio.Future[JobStatus]] = {}

    async def status(self, motion_job_id: str, route: MotionRoute | None = None) -> JobStatus:
        """Motion's status for the job (asked on `route`: its workspace's key), at most
        `cache_seconds` old; MotionError as raised."""
        now = self.clock()
        kept = self._answers.get(motion_job_id)
        if kept is not None and now - kept[0] < self.cache_seconds:
            return kept[1]
        asking = self._asking.get(motion_job_id)
        if asking is not None:
            return await asyncio.shield(asking)
        future: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()
        self._asking[motion_job_id] = future
        try:
            status = await self.motion.status(motion_job_id, route=route)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a burst with no other asker logs nothing
            raise
        else:
            future.set_result(status)
            self._answers[motion_job_id] = (self.clock(), status)
            if len(self._answers) > 10_000:  # a cache, not a record: forget the oldest
                oldest = min(self._answers, key=lambda k: self._answers[k][0])
                self._answers.pop(oldest, None)
            return status
        finally:
            self._asking.pop(motion_job_id, None)

    def finished_run(
        self, job_id: int, run_number: int, team_id: str | None = None
    ) -> tuple[Job, Run] | None:
        """The finished run, while its job is still `team_id`'s when one is named: a job
        deleted with its workspace serves nothing (None), and a link naming another
        workspace's job raises `OtherWorkspace` (bot/jobs/bounds.py)."""
        job = self.store.job(job_id)
        if job is None:
            return None
        if team_id is not None and team_id != job.team_id:
            raise OtherWorkspace("job", team_id)
        runs = self.store.runs(job_id)
        run = next((r for r in runs if r.number == run_number), None)
        if run is None or run.state != RunState.DONE or not run.download_url:
            return None
        return job, run

    def is_latest(self, job: Job, run: Run) -> bool:
        """No later run of the job has finished: Motion's output is still this run's."""
        return not any(
            r.number > run.number and r.state == RunState.DONE for r in self.store.runs(job.id)
        )

    async def current(self, job: Job, run: Run) -> str:
        """The URL that downloads this run now; MotionError if Motion must be asked and fails."""
        assert run.download_url is not None
        if not job.motion_job_id or not self.is_latest(job, run):
            return run.download_url
        route = await self.routes.for_job(job) if self.routes is not None else None
        status = await self.status(job.motion_job_id, route)
        url = status.download_url
        if url is None:
            return run.download_url
        if status.status == MotionStatus.COMPLETED and status.completed_at != run.completed_at:
            # A later run finished at Motion before this app recorded it: its URL is not ours.
            return run.download_url
        return url
