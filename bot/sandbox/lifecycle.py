"""The job lifecycle: how each run is planned, where it is at any moment, what a status call shows.

This module owns the sandbox's jobs and the documented progression of their runs (queued,
created, running, perhaps awaiting_user_input, then completed or failed), the output's own lag
after the job completes (pending, queued, processing, then a download URL), the sources, and the
stale bodies a status call may answer just after a followup. Nothing here knows HTTP or API
keys' validity: ``server.MotionSandbox`` builds on ``JobLifecycle`` and answers the calls.

A run's state is never stored, only derived from its plan, when it was submitted and ``clock``,
so a caller can pass a fake clock and move time forward instead of sleeping.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.sandbox.outputs import (
    DOWNLOAD_BASE,
    DOWNLOAD_URL_LIFETIME_S,
    VIDEO_BYTES,
    download_url,
    generated_sources,
)


@dataclass
class JobPlan:
    """How one run (a create or a followup) behaves; durations are seconds of sandbox clock."""

    queued_s: float = 0.2
    created_s: float = 0.2
    running_s: float = 1.0
    # From job `completed` to a ready URL, spread evenly over output pending/queued/processing.
    render_s: float = 0.5
    fail_error: str | None = None
    # > 0: an awaiting_user_input interlude of this length in the middle of running.
    await_input_s: float = 0.0
    render_fails: bool = False
    source_count: int = 4
    # Returned verbatim (deep-copied) instead of generated sources, to inject hostile text.
    sources: list[dict[str, Any]] | None = None
    # Leave out the `output`/`sources` keys until completed, like the documented example.
    omit_keys: bool = False
    # The first N status calls after this run's followup still answer the previous run's body.
    stale_polls: int = 0
    # Size of the MP4 the run's download URL serves.
    video_bytes: int = VIDEO_BYTES

    def __post_init__(self) -> None:
        durations = (self.queued_s, self.created_s, self.running_s, self.render_s)
        if min(durations) < 0 or self.await_input_s < 0:
            raise ValueError("JobPlan durations must not be negative")
        if self.source_count < 0 or self.stale_polls < 0 or self.video_bytes < 0:
            raise ValueError("JobPlan counts must not be negative")


@dataclass
class Run:
    """One submitted run of a job: the create (number 1) or a followup, and the body it had."""

    number: int
    plan: JobPlan
    submitted_at: float
    body: dict[str, Any]


@dataclass
class Job:
    """A job as the sandbox keeps it: whose it is, its runs, and any stale body still owed."""

    job_id: str
    api_key: str
    runs: list[Run]
    stale_body: dict[str, Any] | None = None
    stale_remaining: int = 0


@dataclass(frozen=True)
class RunState:
    """Where a run is at one moment, and since when; derived, never stored."""

    status: str
    changed_at: float
    finished_at: float | None
    output_status: str | None
    output_ready_at: float | None


def run_state(run: Run, now: float) -> RunState:
    """Where a run is at `now`, derived only from the plan and when the run was submitted."""
    plan = run.plan
    steps, finished_at = _job_steps(run)
    failed = plan.fail_error is not None
    output_steps: list[tuple[float, str]] = []
    ready_at = finished_at + plan.render_s
    if not failed:
        third = plan.render_s / 3
        output_steps = [
            (finished_at, "pending"),
            (finished_at + third, "queued"),
            (finished_at + 2 * third, "processing"),
            (ready_at, "failed" if plan.render_fails else "completed"),
        ]
    changed_at, status = _latest(steps, now) or steps[0]
    output = _latest(output_steps, now)
    if output is not None:
        changed_at = max(changed_at, output[0])
    return RunState(
        status=status,
        changed_at=changed_at,
        finished_at=finished_at if status in ("completed", "failed") else None,
        output_status=output[1] if output else None,
        output_ready_at=ready_at if output and output[1] == "completed" else None,
    )


def _job_steps(run: Run) -> tuple[list[tuple[float, str]], float]:
    """The job statuses a run goes through with when each starts, and when it finishes."""
    plan = run.plan
    running_at = run.submitted_at + plan.queued_s + plan.created_s
    steps = [(run.submitted_at, "queued"), (run.submitted_at + plan.queued_s, "created")]
    steps.append((running_at, "running"))
    if plan.await_input_s > 0:
        paused_at = running_at + plan.running_s / 2
        steps.append((paused_at, "awaiting_user_input"))
        steps.append((paused_at + plan.await_input_s, "running"))
    finished_at = running_at + plan.running_s + plan.await_input_s
    steps.append((finished_at, "failed" if plan.fail_error is not None else "completed"))
    return steps, finished_at


def _latest(steps: list[tuple[float, str]], now: float) -> tuple[float, str] | None:
    """The last step already reached; steps are in order, zero-length phases are skipped."""
    reached = [step for step in steps if step[0] <= now]
    return reached[-1] if reached else None


class JobLifecycle:
    """The sandbox's jobs and their runs, under one lock; the API's state without its HTTP.

    State is read and changed under `_lock` (subclasses share it), because the bot runs in one
    event loop and the sandbox in another thread. Methods documented "under the lock" expect
    the caller to hold it; the others take it themselves.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_plan: JobPlan | None = None,
        stale_polls: int = 0,
    ) -> None:
        self.clock = clock
        self.default_plan = default_plan or JobPlan()
        self.stale_polls = stale_polls
        # Where download URLs point: the .invalid CDN until `start` serves them itself.
        self.download_base = DOWNLOAD_BASE
        # Bumped by `expire_download_urls`: URLs signed for an older generation answer 403.
        self.url_generation = 0
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._clock_anchor = clock()
        self._wall_anchor = time.time()

    def next_plan(self) -> JobPlan:
        """How the run being submitted will behave; called under the lock, once per run."""
        return dataclasses.replace(self.default_plan)

    def timeline(self, job_id: str) -> tuple[float, float]:
        """When the job's first run was submitted and when its download URL appears (or would
        have appeared), on the sandbox clock: what benchmarks measure polling against."""
        with self._lock:
            run = self._jobs[job_id].runs[0]
        plan = run.plan
        generation = plan.queued_s + plan.created_s + plan.running_s + plan.await_input_s
        return run.submitted_at, run.submitted_at + generation + plan.render_s

    def download_url(self, job_id: str, run_number: int) -> str:
        """The run's download URL as a status call would answer it now."""
        return download_url(
            job_id, run_number, base=self.download_base, generation=self.url_generation
        )

    def expire_download_urls(self) -> None:
        """Every download URL handed out so far stops working (403) and status calls answer
        new ones, as when Motion's signed URLs pass their expiry."""
        with self._lock:
            self.url_generation += 1

    # under the lock

    def owned_job(self, job_id: str | None, key: str) -> Job | None:
        """The job if it exists and `key` created it: another key's job does not exist."""
        job = self._jobs.get(job_id or "")
        return job if job is not None and job.api_key == key else None

    def run_by_file_name(self, job_id: str, name: str) -> Run | None:
        """The run a CDN file name (`run-<n>.mp4`) names, if the job has it."""
        job = self._jobs.get(job_id)
        number = name.removeprefix("run-").removesuffix(".mp4")
        if job and number.isdigit() and 0 < int(number) <= len(job.runs):
            return job.runs[int(number) - 1]
        return None

    def create_job(self, key: str, body: dict[str, Any], now: float) -> str:
        """Submit a new job's first run for `key`; its id."""
        job_id = str(uuid.uuid4())
        self._jobs[job_id] = Job(job_id, key, [Run(1, self.next_plan(), now, body)])
        return job_id

    def start_followup(self, job: Job, body: dict[str, Any], now: float) -> None:
        """Submit the job's next run; status calls may go on answering the previous run's body
        for its plan's `stale_polls` (or the sandbox's), as Motion's lag after a followup."""
        previous_body = self._status_body(job, now)
        plan = self.next_plan()
        job.runs.append(Run(len(job.runs) + 1, plan, now, body))
        job.stale_remaining = plan.stale_polls or self.stale_polls
        job.stale_body = previous_body if job.stale_remaining else None

    def status_payload(self, job: Job, now: float) -> dict[str, Any]:
        """What a status call answers now: a stale body while one is owed, else the truth."""
        if job.stale_remaining > 0 and job.stale_body is not None:
            job.stale_remaining -= 1
            return copy.deepcopy(job.stale_body)
        return self._status_body(job, now)

    def _status_body(self, job: Job, now: float) -> dict[str, Any]:
        run = job.runs[-1]
        state = run_state(run, now)
        failed = state.status == "failed"
        finished_at = state.finished_at
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "status": state.status,
            "created_at": self._iso(job.runs[0].submitted_at),
            "updated_at": self._iso(state.changed_at),
            "completed_at": None if finished_at is None else self._iso(finished_at),
            "error": run.plan.fail_error if failed else None,
            "pending_user_input": state.status == "awaiting_user_input",
            "output": None,
            "sources": [],
        }
        if state.status == "completed":
            body["output"] = self._output(job.job_id, run, state)
            body["sources"] = self._sources(job.job_id, run)
        elif not failed and len(job.runs) > 1:
            # A followup run in progress: the previous run's result stays until replaced.
            previous = job.runs[-2]
            body["output"] = self._output(
                job.job_id, previous, run_state(previous, run.submitted_at)
            )
            body["sources"] = self._sources(job.job_id, previous)
        if run.plan.omit_keys and state.status != "completed":
            del body["output"], body["sources"]
        return body

    def _output(self, job_id: str, run: Run, state: RunState) -> dict[str, Any] | None:
        if state.output_status is None:
            return None
        ready = state.output_ready_at
        url = self.download_url(job_id, run.number) if ready is not None else None
        return {
            "status": state.output_status,
            "download_url": url,
            "expires_at": None if ready is None else self._iso(ready + DOWNLOAD_URL_LIFETIME_S),
        }

    def _sources(self, job_id: str, run: Run) -> list[dict[str, Any]]:
        if run.plan.sources is not None:
            return copy.deepcopy(run.plan.sources)
        return generated_sources(job_id, run.number, run.plan.source_count)

    def _iso(self, at: float) -> str:
        """A sandbox-clock time as the API writes it: UTC, milliseconds, a `Z`."""
        wall = self._wall_anchor + (at - self._clock_anchor)
        stamp = datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")
