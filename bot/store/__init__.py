"""Everything that must survive a restart, with methods named by intent.

`Store` is one object over one database; its methods are grouped by what they hold (jobs,
runs, the outbox), each group in its own module, sharing one connection and one write path.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.base import LeaseLost, holding_polls, lease_fence
from bot.store.dialect import Result
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

    def job_and_runs(self, job_id: int) -> tuple[Job | None, list[Run]]:
        """The job and its runs, as a look at it starts: one statement, so one round trip and
        one view of both."""
        found = _jobs_with_runs(
            self.backend.execute(
                "SELECT jobs.*, 1 AS runs_follow, runs.* FROM jobs LEFT JOIN runs"
                " ON runs.job_id = jobs.id WHERE jobs.id = ? ORDER BY runs.number",
                (job_id,),
            )
        )
        return found.get(job_id, (None, []))

    def jobs_and_runs(self, job_ids: Sequence[int]) -> list[tuple[Job, list[Run]]]:
        """Several jobs with their runs (in order), in one statement and one view of each, as
        the poller's claim hands them to the looks it starts. Jobs that do not exist are left
        out; the rest come in the order asked."""
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        found = _jobs_with_runs(
            self.backend.execute(
                "SELECT jobs.*, 1 AS runs_follow, runs.* FROM jobs LEFT JOIN runs ON"
                f" runs.job_id = jobs.id WHERE jobs.id IN ({marks}) ORDER BY jobs.id, runs.number",
                list(job_ids),
            )
        )
        return [found[job_id] for job_id in job_ids if job_id in found]


def _jobs_with_runs(result: Result) -> dict[int, tuple[Job, list[Run]]]:
    """Rows of `jobs.*, 1 AS runs_follow, runs.*` (runs in order; one row with NULL run
    columns for a job without runs) as each job with its runs."""
    split = result.names.index("runs_follow")
    job_names, run_names = result.names[:split], result.names[split + 1 :]
    id_at = job_names.index("id")
    found: dict[int, tuple[Job, list[Run]]] = {}
    for row in result.rows:
        job_id = row[id_at]
        if job_id not in found:
            found[job_id] = (job_from_row(dict(zip(job_names, row[:split], strict=True))), [])
        if row[split + 1] is not None:  # runs.id: NULL when the job has no run yet
            found[job_id][1].append(
                run_from_row(dict(zip(run_names, row[split + 1 :], strict=True)))
            )
    return found


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
