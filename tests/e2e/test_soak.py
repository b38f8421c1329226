"""The crash-and-redelivery soak (bench/soak.py) at small scale: the app as a subprocess, killed
with SIGKILL and restarted on the same database while Slack redelivers events and Motion answers
with 429s, 500s, HTML 502s, timeouts and lost answers. Counted from the doubles at the end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.support.soak import SoakConfig, SoakReport, run_soak

CONFIG = SoakConfig(
    jobs=12,
    kills=3,
    seed=5,
    commands_per_second=3.0,
    kill_window=(1.5, 8.0),
    timeout=45.0,
    fault_gaps={"status": (4, 10), "create": (2, 5), "followup": (2, 5)},
)


async def soak(work_dir: Path) -> SoakReport:
    """Run the soak; once more if bot/ was edited meanwhile (the app restarted on other code)."""
    report = await run_soak(CONFIG, work_dir / "first")
    if report.figures["bot_code_changed_during_run"]:
        report = await run_soak(CONFIG, work_dir / "again")
    return report


async def test_killed_app_with_redelivered_events_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    report = await soak(tmp_path)
    figures = report.figures
    explained = "\n".join([*report.failures, *report.details, f"app log: {report.app_log}"])

    assert report.failures == [], explained
    assert figures["lost"] == 0 and figures["duplicated"] == 0, explained
    assert figures["result_posts"] == figures["runs_with_result"] > 0, explained
    assert figures["kills"] == figures["restarts"] == 3
    assert figures["commands"]["acked"] == 12
    # The soak really exercised what it claims to: redeliveries and faults both happened.
    assert figures["events"]["deliveries_with_retry_header"] >= 1
    assert sum(sum(kinds.values()) for kinds in figures["faults_injected"].values()) >= 3


async def test_three_instances_sharing_one_database_lose_and_duplicate_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """Deliveries spread over three instances at random, redeliveries to another instance,
    random instances SIGKILLed and restarted under new names (others take their jobs over)."""
    config = replace(CONFIG, instances=3, database_url=database_url, lease_seconds=3.0, seed=7)
    report = await run_soak(config, tmp_path / "three")
    if report.figures["bot_code_changed_during_run"]:
        return  # bot/ was edited meanwhile: nothing to conclude
    figures = report.figures
    explained = "\n".join([*report.failures, *report.details, f"app log: {report.app_log}"])
    assert report.failures == [], explained
    assert figures["lost"] == 0 and figures["duplicated"] == 0, explained
    assert figures["result_posts"] == figures["runs_with_result"] > 0, explained
    assert figures["instances"] == 3
    assert figures["takeover"]["never_taken"] == 0, explained
    assert figures["events"]["redelivered_to_another_instance"] >= 1


async def test_kills_between_upload_started_and_recorded_leave_one_video_per_run(
    tmp_path: Path,
) -> None:
    """--uploads: each result's MP4 goes into its thread too, every completion held long
    enough for kills to fall between "upload started" and "upload recorded"."""
    config = replace(CONFIG, uploads=True, seed=11, kill_window=(2.0, 9.0))
    report = await run_soak(config, tmp_path / "uploads")
    if report.figures["bot_code_changed_during_run"]:
        return  # bot/ was edited meanwhile: nothing to conclude
    figures = report.figures
    explained = "\n".join([*report.failures, *report.details, f"app log: {report.app_log}"])
    assert report.failures == [], explained
    assert figures["lost"] == 0 and figures["duplicated"] == 0, explained
    assert figures["result_posts"] == figures["runs_with_result"] > 0, explained
    videos = figures["videos"]
    assert videos["shared"] == videos["runs_with_a_video"] > 0, explained
