"""Everything that must survive a restart, with methods named by intent.

`Store` is one object over one database; its methods are grouped by what they hold (jobs,
runs, the outbox), each group in its own module, sharing one connection and one write path.
"""

from __future__ import annotations

from bot.store.base import LeaseLost, holding_polls, lease_fence
from bot.store.jobs import LEASE_SECONDS, JobRows
from bot.store.models import (
    ACTIVE_RUN_STATES,
    HIDDEN_RUN_STATES,
    Job,
    JobState,
    NewPost,
    Post,
    PostState,
    QuietPoll,
    Run,
    RunKind,
    RunState,
    job_from_row,
    run_from_row,
)
from bot.store.outbox import UPLOAD_KIND, OutboxRows
from bot.store.runs import RunRows
from bot.store.stopping import Stop, StopKind, StopRows
from bot.store.usage import (
    LimitReached,
    LimitScope,
    Preview,
    PreviewGone,
    PreviewKind,
    PreviewState,
    Spend,
    SpendRefused,
    UsageCount,
    UsageRows,
)


class Store(JobRows, RunRows, OutboxRows, UsageRows, StopRows):
    """The app's state in SQLite (WAL mode) or PostgreSQL, migrated at open.

    `Store(target)`: a `postgresql://` (or `postgres://`) URL, a `sqlite:///` URL, or a SQLite
    file path."""

    def claim_due_looks(
        self, now: float, limit: int, *, lease_seconds: float = LEASE_SECONDS
    ) -> list[tuple[Job, list[Run]]]:
        """Lease up to `limit` due jobs (`claim_due_jobs`) and read their runs: two statements
        for the whole batch, where a look reading its own job would cost one each. Read
        after the claim, so whatever changes later wakes the job (`wake`) and its holder looks
        again once this look ends."""
        jobs = self.claim_due_jobs(now, limit, lease_seconds=lease_seconds)
        runs = self.runs_of([job.id for job in jobs])
        return [(job, runs[job.id]) for job in jobs]

    def job_and_runs(self, job_id: int) -> tuple[Job | None, list[Run]]:
        """The job and its runs, as a look at it starts (one call off the loop for both): one
        statement, so one round trip on the poller's hot path and one view of both. A row per
        run (one with NULL run columns when it has none); the job's columns come first."""
        result = self.backend.execute(
            "SELECT jobs.*, 1 AS runs_follow, runs.* FROM jobs LEFT JOIN runs"
            " ON runs.job_id = jobs.id WHERE jobs.id = ? ORDER BY runs.number",
            (job_id,),
        )
        if not result.rows:
            return None, []
        split = result.names.index("runs_follow")
        job_names, run_names = result.names[:split], result.names[split + 1 :]
        job = job_from_row(dict(zip(job_names, result.rows[0][:split], strict=True)))
        runs = [
            run_from_row(dict(zip(run_names, row[split + 1 :], strict=True)))
            for row in result.rows
            if row[split + 1] is not None  # runs.id: NULL when the job has no run yet
        ]
        return job, runs


__all__ = [
    "ACTIVE_RUN_STATES",
    "HIDDEN_RUN_STATES",
    "LEASE_SECONDS",
    "UPLOAD_KIND",
    "Job",
    "JobState",
    "LeaseLost",
    "LimitReached",
    "LimitScope",
    "NewPost",
    "Post",
    "PostState",
    "Preview",
    "PreviewGone",
    "PreviewKind",
    "PreviewState",
    "QuietPoll",
    "Run",
    "RunKind",
    "RunState",
    "Spend",
    "SpendRefused",
    "Stop",
    "StopKind",
    "Store",
    "UsageCount",
    "holding_polls",
    "lease_fence",
]
