"""The pure decisions inside the job service."""

from __future__ import annotations

from bot.jobs.motion_calls import is_new_run
from bot.motion import JobStatus, Output
from bot.store import Run, RunKind, RunState


def followup(baseline_completed: str | None, baseline_url: str | None) -> Run:
    return Run(
        id=2, job_id=1, number=2, kind=RunKind.FOLLOWUP, request={"prompt": "x"}, author="U",
        reply_channel="C", reply_ts="1.2", state=RunState.RUNNING, sent_at=100.0,
        baseline_completed_at=baseline_completed, baseline_url=baseline_url, seen_new=False,
        attempts=0, last_poll_at=None, motion_status=None, completed_at=None,
        download_url=None, expires_at=None, sources=[], error=None, created_at=100.0,
        finished_at=None,
    )  # fmt: skip


def completed(at: str | None, url: str | None) -> JobStatus:
    return JobStatus(
        job_id="j", status="completed", completed_at=at, output=Output("completed", url)
    )


def test_the_previous_run_with_a_freshly_signed_url_is_still_the_previous_run() -> None:
    run = followup("2026-11-23T10:00:00.000Z", "https://cdn/x/run-1.mp4?sig=aaa")
    assert not is_new_run(
        run, completed("2026-11-23T10:00:00.000Z", "https://cdn/x/run-1.mp4?sig=bbb")
    )


def test_a_newer_completed_at_is_the_new_run() -> None:
    run = followup("2026-11-23T10:00:00.000Z", "https://cdn/x/run-1.mp4?sig=aaa")
    assert is_new_run(run, completed("2026-11-23T10:05:00.000Z", "https://cdn/x/run-1.mp4?sig=aaa"))


def test_any_status_but_completed_is_the_new_run_under_way() -> None:
    run = followup("2026-11-23T10:00:00.000Z", "https://cdn/x/run-1.mp4")
    assert is_new_run(run, JobStatus(job_id="j", status="queued"))


def test_without_completed_at_a_new_url_path_decides() -> None:
    run = followup(None, "https://cdn/x/run-1.mp4?sig=a")
    assert not is_new_run(run, completed(None, "https://cdn/x/run-1.mp4?sig=b"))
    assert is_new_run(run, completed(None, "https://cdn/x/run-2.mp4?sig=b"))


def test_a_first_run_has_nothing_to_be_confused_with() -> None:
    run = followup(None, None)
    assert is_new_run(run, completed("2026-11-23T10:00:00.000Z", "https://cdn/x/run-1.mp4"))
