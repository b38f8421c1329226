"""Workspace bounds: a request names a job, a run or a preview only of its own workspace.

Buttons carry ids (a job's, a run's, a preview's token) and forms carry them in their metadata;
ids are small integers anyone can write into a forged payload. So every lookup a request makes
by such an id goes through here with the workspace the request comes from (the payload's team),
and a row of another workspace is never handed back: `OtherWorkspace` is raised instead, before
anything is read from it or changed, and the listeners answer it once, privately, for every
interaction (bot/listeners/__init__.py). A row that does not exist stays None: "already done" or
"gone", as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import Job, Preview, Run, Store


class OtherWorkspace(Exception):
    """A request from `asked_from` named a `what` (job, run, preview) of another workspace.

    Its text names the kind of row and the asking workspace only: never the row's own
    workspace, its content or a preview's token (the log line is the only place it goes)."""

    def __init__(self, what: str, asked_from: str) -> None:
        super().__init__(f"a {what} of another workspace, asked for from {asked_from or '(none)'}")
        self.what = what
        self.asked_from = asked_from


def _check(owner_team: str, team_id: str, what: str) -> None:
    if not team_id or owner_team != team_id:
        raise OtherWorkspace(what, team_id)


def job_for(store: Store, team_id: str, job_id: int) -> Job | None:
    """The job, if it is `team_id`'s; None if there is none; `OtherWorkspace` otherwise."""
    job = store.job(job_id)
    if job is not None:
        _check(job.team_id, team_id, "job")
    return job


@dataclass(frozen=True)
class RunOfJob:
    run: Run
    job: Job


def run_for(store: Store, team_id: str, run_id: int) -> RunOfJob | None:
    """The run and its job, if they are `team_id`'s; None if either is gone;
    `OtherWorkspace` otherwise."""
    run = store.run(run_id)
    job = store.job(run.job_id) if run is not None else None
    if run is None or job is None:
        return None
    _check(job.team_id, team_id, "run")
    return RunOfJob(run, job)


def preview_for(store: Store, team_id: str, token: str) -> Preview | None:
    """The MOTION_CONFIRM preview, if it is `team_id`'s; None if there is none;
    `OtherWorkspace` otherwise (a token is a capability, but not across workspaces)."""
    preview = store.preview(token) if token else None
    if preview is not None:
        _check(preview.team_id, team_id, "preview")
    return preview
